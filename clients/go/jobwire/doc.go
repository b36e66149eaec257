// Package jobwire is the Go client of Jobwire, a job broker that speaks gRPC.
//
// A Client enqueues jobs, inspects, cancels and watches them; a Worker leases jobs
// from one or more queues and runs a Handler for each, with automatic heartbeats,
// bounded concurrency and graceful shutdown. Retries and timeouts come from the gRPC
// service config shipped with the protos (DefaultServiceConfig), and broker errors are
// mapped, by their jobwirev1.ErrorReason first and their gRPC code second, to the
// sentinels and types of errors.go. Trace context travels with each job (W3C Trace
// Context and Baggage through OpenTelemetry), so a worker's span joins the producer's
// trace.
package jobwire

// Version is the version of this client, reported as the OpenTelemetry
// instrumentation version.
const Version = "0.1.0"

const (
	instrumentationName = "github.com/jobwire/jobwire/clients/go/jobwire"
	messagingSystem     = "jobwire"
)
