// Package testbroker starts a real Jobwire broker (the Python service, with its own
// embedded Valkey) for tests, and stops it.
package testbroker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"
	"time"
)

// ReadyTimeout bounds how long Start waits for the broker to say it is serving.
const ReadyTimeout = 60 * time.Second

var servingLine = regexp.MustCompile(`jobwire: serving on \S+ \(port (\d+)\)`)

// Broker is a running broker process.
type Broker struct {
	// Target is the broker's "127.0.0.1:<port>".
	Target string
	cmd    *exec.Cmd
	dir    string
	exited chan error
}

// Python is the interpreter that runs the broker: $JOBWIRE_PYTHON, or the
// repository's .venv/bin/python.
func Python() string {
	if p := os.Getenv("JOBWIRE_PYTHON"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0) // <repo>/clients/go/internal/testbroker/testbroker.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", ".venv", "bin", "python")
}

// Start runs `python -m jobwire_broker serve` on a free loopback port with a fresh
// data directory and waits until it serves. args are more flags for `serve`, such as
// "--max-payload-bytes", "6291456".
func Start(args ...string) (*Broker, error) {
	dir, err := os.MkdirTemp("", "jobwire-go-test-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Python(), append([]string{"-m", "jobwire_broker", "serve",
		"--listen", "127.0.0.1:0", "--redis-url", "", "--data-dir", dir, "--log-level", "WARNING"}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = procAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start broker with %s (set JOBWIRE_PYTHON, or run `make setup`): %w", Python(), err)
	}
	b := &Broker{cmd: cmd, dir: dir, exited: make(chan error, 1)}
	port := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if m := servingLine.FindStringSubmatch(lines.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stdout) // keep the pipe drained
		b.exited <- cmd.Wait()
	}()
	select {
	case p := <-port:
		b.Target = "127.0.0.1:" + p
		return b, nil
	case err := <-b.exited:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("broker exited before serving: %v", err)
	case <-time.After(ReadyTimeout):
		b.Stop()
		return nil, errors.New("broker did not start serving in time")
	}
}

// Stop sends SIGTERM, waits for the broker to exit (killing it after 20 s) and
// removes its data directory.
func (b *Broker) Stop() error {
	defer os.RemoveAll(b.dir)
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-b.exited:
		return err
	case <-time.After(20 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		return errors.New("broker ignored SIGTERM; killed")
	}
}
