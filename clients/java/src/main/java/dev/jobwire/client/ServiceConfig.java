package dev.jobwire.client;

import com.google.gson.Gson;
import com.google.gson.reflect.TypeToken;
import io.grpc.Status;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;

/**
 * The gRPC service config shipped with the protos ({@code protos/jobwire/v1/service_config.json},
 * on the classpath as {@value #RESOURCE} through the pom's resources): the retry policy and
 * timeout of each RPC. The channel gets it as {@code defaultServiceConfig}; the client's own
 * retries read their policy from it too.
 */
final class ServiceConfig {
  static final String RESOURCE = "/jobwire/v1/service_config.json";
  private static final String SERVICE = "jobwire.v1.BrokerService";

  private ServiceConfig() {}

  /** The shipped config, parsed afresh (callers may change their copy). */
  static Map<String, Object> shipped() {
    try (InputStream in = ServiceConfig.class.getResourceAsStream(RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(RESOURCE + " is not on the classpath (see pom.xml)");
      }
      return parse(new String(in.readAllBytes(), StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A service config document as the maps, lists, strings and doubles gRPC-Java takes. */
  static Map<String, Object> parse(String json) {
    Map<String, Object> parsed = new Gson().fromJson(json, new TypeToken<Map<String, Object>>() {}.getType());
    return Objects.requireNonNull(parsed, "empty service config");
  }

  /** The entry of {@code method}, chosen as gRPC does: its own, else the service's. */
  private static Optional<Map<?, ?>> entry(Map<String, ?> config, String method) {
    Map<?, ?> serviceWide = null;
    if (config.get("methodConfig") instanceof List<?> entries) {
      for (Object e : entries) {
        if (!(e instanceof Map<?, ?> entry) || !(entry.get("name") instanceof List<?> names)) {
          continue;
        }
        for (Object n : names) {
          if (!(n instanceof Map<?, ?> name)) {
            continue;
          }
          Object service = name.get("service");
          if (service != null && !SERVICE.equals(service) && !"".equals(service)) {
            continue;
          }
          Object m = name.get("method");
          if (method.equals(m)) {
            return Optional.of(entry);
          }
          if ((m == null || "".equals(m)) && serviceWide == null) {
            serviceWide = entry;
          }
        }
      }
    }
    return Optional.ofNullable(serviceWide);
  }

  /** The retry policy of {@code method}, if the config retries it. */
  static Optional<RetryPolicy> retryPolicy(Map<String, ?> config, String method) {
    return entry(config, method)
        .map(e -> e.get("retryPolicy"))
        .filter(Map.class::isInstance)
        .map(p -> toPolicy((Map<?, ?>) p));
  }

  /** The timeout of {@code method}, if the config gives it one. */
  static Optional<Duration> timeout(Map<String, ?> config, String method) {
    return entry(config, method).map(e -> e.get("timeout")).map(t -> duration(t));
  }

  private static RetryPolicy toPolicy(Map<?, ?> p) {
    Set<Status.Code> codes = EnumSet.noneOf(Status.Code.class);
    if (p.get("retryableStatusCodes") instanceof List<?> list) {
      for (Object c : list) {
        codes.add(
            c instanceof Number n ? Status.fromCodeValue(n.intValue()).getCode() : Status.Code.valueOf(c.toString()));
      }
    }
    // gRPC caps attempts at 5 whatever the config says.
    int maxAttempts = Math.min(((Number) p.get("maxAttempts")).intValue(), 5);
    return new RetryPolicy(
        maxAttempts,
        duration(p.get("initialBackoff")),
        duration(p.get("maxBackoff")),
        ((Number) p.get("backoffMultiplier")).doubleValue(),
        codes);
  }

  /** A protobuf JSON Duration such as "0.1s". */
  private static Duration duration(Object value) {
    String s = String.valueOf(value);
    if (!s.endsWith("s")) {
      throw new IllegalArgumentException("service config: bad duration " + s);
    }
    BigDecimal seconds = new BigDecimal(s.substring(0, s.length() - 1));
    return Duration.ofNanos(seconds.movePointRight(9).longValueExact());
  }
}
