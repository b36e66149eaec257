package dev.jobwire.client;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A real Jobwire broker in a child process, with its own embedded Valkey in a temporary
 * data directory. The Python interpreter is $JOBWIRE_PYTHON, by default the repository's
 * .venv. It is ready once it has written its ready file ({@code --ready-file}).
 */
final class Broker implements AutoCloseable {
  // The ready file is one flat JSON object of the broker's own making (version 1); these
  // two fields are all we read, so no JSON library joins the test classpath for them.
  private static final Pattern VERSION = Pattern.compile("\"version\"\\s*:\\s*1\\b");
  private static final Pattern GRPC_PORT = Pattern.compile("\"grpc_port\"\\s*:\\s*(\\d+)");

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
    long run = System.nanoTime();
    Path log = dataDir.resolve("broker-" + run + ".log");
    // One per start: a restart over the same data dir must not read the last run's file.
    Path readyFile = dataDir.resolve("ready-" + run + ".json");
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
                "--ready-file",
                readyFile.toString(),
                "--grace",
                Integer.toString(graceSeconds)));
    command.addAll(serveArgs);
    ProcessBuilder pb =
        new ProcessBuilder(command)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.PIPE);
    Process process = pb.start();
    int bound = waitReady(process, readyFile, log);
    return new Broker(process, dataDir, log, bound, ownsDataDir);
  }

  /**
   * Polls for the ready file (the broker renames it into place whole, so once it exists it is
   * complete) and returns its gRPC port; fails with the broker's log if it exits first or
   * takes longer than 60 s.
   */
  private static int waitReady(Process process, Path readyFile, Path log) throws IOException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (true) {
      try {
        String ready = Files.readString(readyFile);
        Matcher port = GRPC_PORT.matcher(ready);
        if (!VERSION.matcher(ready).find() || !port.find()) {
          process.destroyForcibly();
          throw new IOException("unexpected ready file: " + ready);
        }
        return Integer.parseInt(port.group(1));
      } catch (NoSuchFileException notYet) {
        // not serving yet
      }
      String why = null;
      if (!process.isAlive()) {
        why = "broker exited with " + process.exitValue() + " before it was ready";
      } else if (System.nanoTime() > deadline) {
        process.destroyForcibly();
        why = "broker not ready after 60 s";
      }
      if (why != null) {
        throw new IOException(why + "; its log:\n" + Files.readString(log));
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        process.destroyForcibly();
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for the broker", e);
      }
    }
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
