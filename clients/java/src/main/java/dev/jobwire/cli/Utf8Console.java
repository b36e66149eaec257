package dev.jobwire.cli;

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * UTF-8 in and out for a command-line program, whatever the locale.
 *
 * <p>The {@code java} launcher decodes {@code main}'s arguments with the platform encoding
 * ({@code sun.jnu.encoding}, from the locale; Java 17 and 18+ alike, and {@code
 * -Dsun.jnu.encoding} cannot change it). Under {@code LANG=C} or {@code LC_ALL=C} that is
 * ASCII, and each byte of a non-ASCII character has become U+FFFD before {@code main} runs
 * ({@code héllo ✓} arrives as {@code h??llo ???}, each {@code ?} a U+FFFD). On Linux the bytes
 * the program was started with are still in {@code /proc/self/cmdline}, so {@link
 * #arguments} decodes them again as UTF-8. Likewise {@code System.out} and {@code
 * System.err} encode with the locale's charset (ASCII: every non-ASCII character a {@code
 * ?}); {@link #useUtf8Output} makes them write UTF-8.
 */
final class Utf8Console {
  private Utf8Console() {}

  /** Points {@code System.out} and {@code System.err} at UTF-8 streams on fds 1 and 2. */
  static void useUtf8Output() {
    System.setOut(utf8(FileDescriptor.out));
    System.setErr(utf8(FileDescriptor.err));
  }

  private static PrintStream utf8(FileDescriptor fd) {
    return new PrintStream(
        new BufferedOutputStream(new FileOutputStream(fd)), true, StandardCharsets.UTF_8);
  }

  /**
   * {@code args} as the user typed them: when the platform encoding is not UTF-8, each
   * argument is decoded again from the raw bytes in {@code /proc/self/cmdline}. {@code args}
   * come back unchanged when the platform encoding is UTF-8, when there is no such file (not
   * Linux), when its last arguments are not the ones {@code main} got (an {@code @argfile},
   * or a program run inside another JVM such as {@code mvn exec:java}), and, one by one, for
   * arguments whose bytes are not valid UTF-8.
   */
  static String[] arguments(String[] args) {
    Charset platform = platformCharset();
    if (args.length == 0 || platform.equals(StandardCharsets.UTF_8)) {
      return args;
    }
    byte[] cmdline;
    try {
      cmdline = Files.readAllBytes(Path.of("/proc/self/cmdline"));
    } catch (IOException | RuntimeException e) {
      return args;
    }
    return arguments(args, platform, cmdline);
  }

  /** {@link #arguments(String[])} with the platform charset and command line given. */
  static String[] arguments(String[] args, Charset platform, byte[] cmdline) {
    List<byte[]> all = split(cmdline);
    if (all.size() < args.length) {
      return args;
    }
    List<byte[]> raw = all.subList(all.size() - args.length, all.size());
    for (int i = 0; i < args.length; i++) {
      // The launcher made args[i] with exactly this decoding: if it differs, these bytes
      // are not that argument.
      if (!new String(raw.get(i), platform).equals(args[i])) {
        return args;
      }
    }
    String[] out = Arrays.copyOf(args, args.length);
    for (int i = 0; i < args.length; i++) {
      try {
        out[i] =
            StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(raw.get(i)))
                .toString();
      } catch (CharacterCodingException e) {
        // Not UTF-8: leave it as the platform decoded it.
      }
    }
    return out;
  }

  /** The NUL-terminated strings of a {@code /proc/<pid>/cmdline}. */
  private static List<byte[]> split(byte[] cmdline) {
    List<byte[]> parts = new ArrayList<>();
    int start = 0;
    for (int i = 0; i < cmdline.length; i++) {
      if (cmdline[i] == 0) {
        parts.add(Arrays.copyOfRange(cmdline, start, i));
        start = i + 1;
      }
    }
    if (start < cmdline.length) {
      parts.add(Arrays.copyOfRange(cmdline, start, cmdline.length));
    }
    return parts;
  }

  /** The charset the launcher decoded the arguments with. */
  static Charset platformCharset() {
    String name = System.getProperty("sun.jnu.encoding");
    try {
      return name == null ? Charset.defaultCharset() : Charset.forName(name);
    } catch (IllegalArgumentException e) {
      return Charset.defaultCharset();
    }
  }
}
