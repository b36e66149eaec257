package dev.jobwire.client;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A real Jobwire broker in a child process, with its own embedded Valkey in a temporary
 * data directory. The Python interpreter is $JOBWIRE_PYTHON, by default the repository's
 * .venv.
 */
final class Broker implements AutoCloseable {
  private static final Pattern READY = Pattern.compile("jobwire: serving on .* \\(port (\\d+)\\)");

  private final Process process;
  private final Path dataDir;
  private final Path log;
  private final int port;
  private final boolean ownsDataDir;

  private Broker(Process process, Path dataDir, Path log, int port, boolean ownsDataDir) {
    this.process = process;
    this.dataDir = dataDir;
    this.log = log;
    this.port = port;
    this.ownsDataDir = ownsDataDir;
  }

  /** Starts a broker on a free loopback port with a fresh data directory. */
  static Broker start() throws IOException {
    return start(Files.createTempDirectory("jobwire-java-"), 0, true);
  }

  /**
   * As {@link #start()}, with more flags for {@code serve}, e.g. {@code
   * "--max-payload-bytes", "6291456"}.
   */
  static Broker startWith(String... serveArgs) throws IOException {
    return start(Files.createTempDirectory("jobwire-java-"), 0, true, 10, List.of(serveArgs));
  }

  /** Starts a broker on {@code port} (0: any) over an existing data directory. */
  static Broker start(Path dataDir, int port, boolean ownsDataDir) throws IOException {
    return start(dataDir, port, ownsDataDir, 10);
  }

  /** As above, with {@code graceSeconds} for calls in flight at SIGTERM. */
  static Broker start(Path dataDir, int port, boolean ownsDataDir, int graceSeconds)
      throws IOException {
    return start(dataDir, port, ownsDataDir, graceSeconds, List.of());
  }

  private static Broker start(
      Path dataDir, int port, boolean ownsDataDir, int graceSeconds, List<String> serveArgs)
      throws IOException {
    Path log = dataDir.resolve("broker-" + System.nanoTime() + ".log");
    List<String> command =
        new ArrayList<>(
            List.of(
                python(),
                "-m",
                "jobwire_broker",
                "serve",
                "--listen",
                "127.0.0.1:" + port,
                "--redis-url",
                "",
                "--data-dir",
                dataDir.toString(),
                "--grace",
                Integer.toString(graceSeconds)));
    command.addAll(serveArgs);
    ProcessBuilder pb =
        new ProcessBuilder(command)
            .redirectError(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.PIPE);
    pb.environment().put("PYTHONUNBUFFERED", "1");
    Process process = pb.start();
    BufferedReader stdout =
        new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
    CompletableFuture<Integer> ready =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                for (String line; (line = stdout.readLine()) != null; ) {
                  Matcher m = READY.matcher(line);
                  if (m.find()) {
                    return Integer.parseInt(m.group(1));
                  }
                }
                return -1;
              } catch (IOException e) {
                return -1;
              }
            });
    int bound;
    try {
      bound = ready.get(60, TimeUnit.SECONDS);
    } catch (InterruptedException | ExecutionException | TimeoutException e) {
      bound = -1;
    }
    if (bound <= 0) {
      process.destroyForcibly();
      throw new IOException("broker did not start; its log:\n" + Files.readString(log));
    }
    return new Broker(process, dataDir, log, bound, ownsDataDir);
  }

  private static String python() {
    String configured = System.getenv("JOBWIRE_PYTHON");
    if (configured != null && !configured.isEmpty()) {
      return configured;
    }
    // clients/java -> repository root
    Path repo = Paths.get("").toAbsolutePath().getParent().getParent();
    return repo.resolve(".venv").resolve("bin").resolve("python").toString();
  }

  int port() {
    return port;
  }

  String target() {
    return "127.0.0.1:" + port;
  }

  Path dataDir() {
    return dataDir;
  }

  /** SIGTERM, then wait for a clean exit (the broker stops its Valkey on the way out). */
  void stop() throws IOException, InterruptedException {
    process.destroy();
    if (!process.waitFor(30, TimeUnit.SECONDS)) {
      process.destroyForcibly();
      process.waitFor();
      throw new IOException("broker ignored SIGTERM; its log:\n" + Files.readString(log));
    }
  }

  @Override
  public void close() throws Exception {
    try {
      stop();
    } finally {
      if (ownsDataDir) {
        deleteTree(dataDir);
      }
    }
  }

  static void deleteTree(Path root) throws IOException {
    try (Stream<Path> walk = Files.walk(root)) {
      List<Path> paths = walk.sorted(Comparator.reverseOrder()).toList();
      for (Path p : paths) {
        File f = p.toFile();
        if (!f.delete() && f.exists()) {
          throw new IOException("could not delete " + p);
        }
      }
    }
  }
}
