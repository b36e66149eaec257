package dev.jobwire.client;

/**
 * One bad field of a rejected request, from {@code google.rpc.BadRequest}.
 *
 * @param field the path of the field in the request, e.g. {@code job.priority}
 * @param description what is wrong with it
 */
public record FieldViolation(String field, String description) {}
