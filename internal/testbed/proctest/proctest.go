// Package proctest runs rcwatch as its users do, as a process: the binary
// built once per test package (Main, Rcwatch), each process started with
// its output in a log file that the test's log shows (the tail) when the
// test fails, stopped by a signal within a grace period, and never left
// running after its test.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// Package is the import path of the rcwatch command.
const Package = "github.com/rcwatch/rcwatch/cmd/rcwatch"

var rcwatch string

// Build builds the Go package pkg into dir and returns the binary's path.
func Build(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// Main builds rcwatch once for the test package (Rcwatch is its path), runs
// the tests under leaktest.Main, then after, then removes the binary.
func Main(m *testing.M, after ...func()) {
	dir, err := os.MkdirTemp("", "rcwatch-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "proctest: %v\n", err)
		os.Exit(1)
	}
	rcwatch, err = Build(dir, Package)
	if err != nil {
		fmt.Fprintf(os.Stderr, "proctest: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	leaktest.Main(m, append(after, func() { os.RemoveAll(dir) })...)
}

// Rcwatch is the path of the binary Main built.
func Rcwatch() string {
	if rcwatch == "" {
		panic("proctest.Rcwatch: TestMain does not call proctest.Main")
	}
	return rcwatch
}

// Options tune a process.
type Options struct {
	// Name names the process in messages and its log file (default "rcwatch").
	Name string
	// Env is added to the test's environment and RCWATCH_LOG_FORMAT=json.
	Env []string
	// Grace: at cleanup a process still running gets SIGTERM and this long
	// to exit before SIGKILL; 0 kills it at once.
	Grace time.Duration
	// LogTail is how much of the log a failed test shows (default 12000 bytes).
	LogTail int
}

// Proc is a process started by a test.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Log is the file holding the process's stdout and stderr.
	Log  string
	done chan struct{}
	err  error
}

// Start runs bin with args (Rcwatch() for the rcwatch binary) and stops it
// at cleanup.
func Start(tb testing.TB, bin string, o Options, args ...string) *Proc {
	tb.Helper()
	if o.Name == "" {
		o.Name = "rcwatch"
	}
	if o.LogTail == 0 {
		o.LogTail = 12000
	}
	logf := filepath.Join(tb.TempDir(), o.Name+".log")
	f, err := os.Create(logf)
	if err != nil {
		tb.Fatalf("creating the log of %s: %v", o.Name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "RCWATCH_LOG_FORMAT=json"), o.Env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("starting %s: %v", o.Name, err)
	}
	p := &Proc{Name: o.Name, Cmd: cmd, Log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if o.Grace > 0 {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(o.Grace):
			}
		}
		_ = cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("--- %s %v log (tail):\n%s", o.Name, args, p.Tail(o.LogTail))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process exited (nil for status 0), once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig and waits for the exit: it returns how the process
// exited (nil for status 0) and fails the test if it does not exit within.
//
// A SIGTERM or SIGINT is sent only once the process has written its first
// line: before its main function has installed its signal handler (a
// loaded machine can take a while to start a large binary) the signal's
// default action would kill it, and the test would see a crash, not a drain.
func (p *Proc) Signal(tb testing.TB, sig syscall.Signal, within time.Duration) error {
	tb.Helper()
	t := time.NewTimer(within)
	defer t.Stop()
	if sig == syscall.SIGTERM || sig == syscall.SIGINT {
		p.awaitStarted(t.C)
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatalf("signalling %s: %v", p.Name, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		tb.Fatalf("%s did not exit within %v of %v", p.Name, within, sig)
		return nil
	}
}

// awaitStarted waits until the process has written something, has exited,
// or deadline fires. A file has no event to await: it polls.
func (p *Proc) awaitStarted(deadline <-chan time.Time) {
	for {
		if fi, err := os.Stat(p.Log); err == nil && fi.Size() > 0 {
			return
		}
		select {
		case <-p.done:
			return
		case <-deadline:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill(tb testing.TB) {
	tb.Helper()
	if err := p.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatalf("killing %s: %v", p.Name, err)
	}
	<-p.done
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail is the last n bytes the process wrote.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
