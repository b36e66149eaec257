package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.jobwire.v1.Job;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The {@code Enqueue} CLI in a child JVM, launched as the README says ({@code java -cp
 * target/classes:$(cat target/classpath.txt) dev.jobwire.cli.Enqueue}), under {@code
 * LC_ALL=C}: the launcher then decodes arguments as ASCII, and the CLI must still store
 * and print the UTF-8 the user typed.
 */
@ExtendWith(BrokerExtension.class)
@Timeout(120)
class EnqueueCliTest {
  private static final String TEXT = "héllo ✓ 汉字";

  record Run(int exit, byte[] stdout, byte[] stderr) {
    String out() {
      return strictUtf8(stdout);
    }

    String err() {
      return strictUtf8(stderr);
    }
  }

  /** Decodes bytes that must be valid UTF-8. */
  static String strictUtf8(byte[] bytes) {
    try {
      return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
    } catch (CharacterCodingException e) {
      throw new AssertionError("not UTF-8: " + new String(bytes, StandardCharsets.ISO_8859_1), e);
    }
  }

  static Run enqueueCli(String... args) throws IOException, InterruptedException {
    Path project = Path.of("").toAbsolutePath();
    String classpath =
        project.resolve("target/classes")
            + ":"
            + Files.readString(project.resolve("target/classpath.txt")).strip();
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-cp");
    command.add(classpath);
    command.add("dev.jobwire.cli.Enqueue");
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command);
    Map<String, String> env = pb.environment();
    env.keySet().removeIf(k -> k.equals("LANG") || k.startsWith("LC_"));
    env.put("LC_ALL", "C");
    env.put("LANG", "C");
    env.remove("JAVA_TOOL_OPTIONS");
    env.remove("JDK_JAVA_OPTIONS");
    Path stdout = Files.createTempFile("enqueue-cli", ".out");
    Path stderr = Files.createTempFile("enqueue-cli", ".err");
    try {
      Process p = pb.redirectOutput(stdout.toFile()).redirectError(stderr.toFile()).start();
      p.getOutputStream().close();
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError("the CLI did not finish");
      }
      return new Run(p.exitValue(), Files.readAllBytes(stdout), Files.readAllBytes(stderr));
    } finally {
      Files.deleteIfExists(stdout);
      Files.deleteIfExists(stderr);
    }
  }

  @Test
  void nonAsciiArgumentsSurviveTheCLocale(Broker broker) throws Exception {
    String queue = "java-cli-" + UUID.randomUUID().toString().substring(0, 8);
    Run run =
        enqueueCli(
            "--target", broker.target(),
            "--queue", queue,
            "--payload", TEXT,
            "--content-type", "text/plain; charset=utf-8",
            "--header", "städte=Zürich ✓");
    assertEquals(0, run.exit(), run.err());
    String jobId = run.out().strip();
    assertTrue(jobId.startsWith(queue + ":"), run.out());

    try (JobwireClient client = JobwireClient.builder(broker.target()).build()) {
      Job job = client.getJob(jobId);
      assertArrayEquals(TEXT.getBytes(StandardCharsets.UTF_8), job.getSpec().getPayload().toByteArray());
      assertEquals(Map.of("städte", "Zürich ✓"), job.getSpec().getHeadersMap());
    }
  }

  @Test
  void errorsAreWrittenAsUtf8UnderTheCLocale() throws Exception {
    Run run = enqueueCli("--queue", "q", "--header", TEXT);
    assertEquals(2, run.exit(), run.err());
    assertTrue(run.err().contains("--header wants KEY=VALUE, got " + TEXT), run.err());
    assertEquals("", run.out());
  }
}
