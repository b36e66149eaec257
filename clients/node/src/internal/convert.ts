// Conversions between the JS idioms of the public API (milliseconds, strings, JSON
// values) and the wire types (google.protobuf.Duration, bytes).

import type { Duration } from "../gen/google/protobuf/duration.js";

export const CONTENT_TYPE_JSON = "application/json";
export const CONTENT_TYPE_TEXT = "text/plain; charset=utf-8";
export const CONTENT_TYPE_BYTES = "application/octet-stream";

export function msToDuration(ms: number): Duration {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`duration must be a non-negative number of ms, got ${ms}`);
  const whole = Math.floor(ms);
  return { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}

export function durationToMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : d.seconds * 1000 + Math.floor(d.nanos / 1_000_000);
}

/** Bytes and their MIME type. */
export interface Encoded {
  data: Buffer;
  contentType: string;
}

/**
 * Bytes go as they are, strings as UTF-8 text, anything else as JSON. An explicit
 * content type wins over the inferred one.
 */
export function encodeValue(value: unknown, contentType?: string): Encoded {
  let encoded: Encoded;
  if (value instanceof Uint8Array) {
    encoded = { data: Buffer.from(value.buffer, value.byteOffset, value.byteLength), contentType: CONTENT_TYPE_BYTES };
  } else if (typeof value === "string") {
    encoded = { data: Buffer.from(value, "utf8"), contentType: CONTENT_TYPE_TEXT };
  } else {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
    encoded = { data: Buffer.from(json, "utf8"), contentType: CONTENT_TYPE_JSON };
  }
  if (contentType !== undefined) encoded.contentType = contentType;
  return encoded;
}

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}
