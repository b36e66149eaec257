/**
 * Producer client for the Jobwire job broker: enqueue jobs, inspect and cancel them, and
 * watch their progress over gRPC.
 *
 * <p>Start with {@link dev.jobwire.client.JobwireClient#builder(String)}. Errors surface as
 * unchecked {@link dev.jobwire.client.JobwireException}s, one subclass per case a caller
 * acts on. The wire types are the generated {@code dev.jobwire.v1} protobuf classes.
 */
package dev.jobwire.client;
