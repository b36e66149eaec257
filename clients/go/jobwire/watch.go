package jobwire

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// EventKind says what happened in an Event.
type EventKind = jobwirev1.EventKind

// The kinds of events.
const (
	// EventSnapshot carries the whole job as it is now; a watch starts with one.
	EventSnapshot = jobwirev1.EventKind_EVENT_KIND_SNAPSHOT
	// EventStateChanged: the job moved to Job.State.
	EventStateChanged = jobwirev1.EventKind_EVENT_KIND_STATE_CHANGED
	// EventProgress: the worker reported progress (Job.Progress).
	EventProgress = jobwirev1.EventKind_EVENT_KIND_PROGRESS
	// EventCancelRequested: CancelJob was called on the active job.
	EventCancelRequested = jobwirev1.EventKind_EVENT_KIND_CANCEL_REQUESTED
)

// Event is one event of a watched job.
type Event struct {
	// ID is the event's resume token.
	ID   string
	Kind EventKind
	// Time is when it happened (the broker's store clock).
	Time time.Time
	// Job is the whole job for EventSnapshot; otherwise its id, queue, state and
	// attempt, and the fields the event changed (progress, last error, result).
	Job *jobwirev1.Job
}

// Watch streams a job's events: first a snapshot of its current state, then every
// progress update and state change in order; the sequence ends after the event that
// puts the job in a terminal state. A stream dropped with UNAVAILABLE (a broker
// restart, a cut connection) is reopened after the last event seen, so no event is
// missed or repeated, with the backoff of the service config's retry policy of
// StreamProgress; after its maxAttempts failures in a row, or any other error, the error
// is yielded once and the sequence ends. Breaking out of the loop
// closes the stream.
//
//	for ev, err := range client.Watch(ctx, jobID) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(ev.Kind, ev.Job.GetState())
//	}
func (c *Client) Watch(ctx context.Context, jobID string) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		after := ""
		failures := 0
		policy := c.config.method("StreamProgress").retry
		for {
			err := c.stream(ctx, jobID, &after, func(ev Event) bool {
				failures = 0
				return yield(ev, nil)
			})
			if err == nil {
				return // the job ended, or the caller stopped
			}
			failures++
			var rpcErr *Error
			if policy == nil || !errors.As(err, &rpcErr) || !policy.retries(rpcErr.Code) || failures >= policy.maxAttempts ||
				!sleep(ctx, policy.backoff(failures, rpcErr.RetryDelay)) {
				yield(Event{}, err)
				return
			}
		}
	}
}

// stream runs one StreamProgress call, advancing *after with each event. It returns
// nil when the stream ended normally or the consumer stopped.
func (c *Client) stream(ctx context.Context, jobID string, after *string, yield func(Event) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.StreamProgress(ctx, &jobwirev1.StreamProgressRequest{JobId: jobID, AfterEventId: *after})
	if err != nil {
		return mapError(err)
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return mapError(err)
		}
		*after = resp.GetEventId()
		if !yield(Event{ID: resp.GetEventId(), Kind: resp.GetKind(), Time: resp.GetEventTime().AsTime(), Job: resp.GetJob()}) {
			return nil
		}
	}
}
