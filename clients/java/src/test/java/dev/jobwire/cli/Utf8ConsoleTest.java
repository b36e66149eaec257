package dev.jobwire.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.io.ByteArrayOutputStream;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** How {@link Utf8Console#arguments} recovers what the launcher decoded as ASCII. */
class Utf8ConsoleTest {
  private static final Charset ASCII = StandardCharsets.US_ASCII;

  /** A /proc/self/cmdline: each argument's bytes, NUL-terminated. */
  private static byte[] cmdline(byte[]... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] arg : args) {
      out.writeBytes(arg);
      out.write(0);
    }
    return out.toByteArray();
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  /** What the launcher hands to main under LANG=C. */
  private static String ascii(byte[] bytes) {
    return new String(bytes, ASCII);
  }

  @Test
  void recoversUtf8ArgumentsFromTheCommandLine() {
    byte[] payload = utf8("héllo ✓");
    String[] args = {"--payload", ascii(payload), "", "--queue", "q"};
    byte[] raw =
        cmdline(
            utf8("java"), utf8("-cp"), utf8("x"), utf8("dev.jobwire.cli.Enqueue"),
            utf8("--payload"), payload, new byte[0], utf8("--queue"), utf8("q"));
    assertArrayEquals(
        new String[] {"--payload", "héllo ✓", "", "--queue", "q"},
        Utf8Console.arguments(args, ASCII, raw));
  }

  @Test
  void keepsArgumentsThatAreNotTheCommandLineTail() {
    String[] args = {"--payload", "abc"};
    byte[] raw = cmdline(utf8("mvn"), utf8("exec:java"), utf8("-Dexec.args=--payload abc"));
    assertArrayEquals(args, Utf8Console.arguments(args, ASCII, raw));
    assertArrayEquals(args, Utf8Console.arguments(args, ASCII, cmdline(utf8("abc"))));
  }

  @Test
  void keepsArgumentsWhoseBytesAreNotUtf8() {
    byte[] latin1 = {'z', (byte) 0xfc, 'r'};
    String[] args = {ascii(latin1), ascii(utf8("ü"))};
    assertArrayEquals(
        new String[] {args[0], "ü"},
        Utf8Console.arguments(args, ASCII, cmdline(utf8("java"), latin1, utf8("ü"))));
  }
}
