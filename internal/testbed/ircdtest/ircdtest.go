// Package ircdtest runs a real IRC server (Debian's ngircd) for tests, on a
// free loopback port with a temporary configuration, and provides a tiny raw
// IRC client that joins a channel and records every line it receives with its
// receive time. Tests that need the server fail when CI=true and ngircd is
// missing, and skip otherwise.
package ircdtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"

	"github.com/stretchr/testify/require"
)

// Binary returns the ngircd path ($NGIRCD or the Debian location or $PATH).
func Binary() string {
	if p := os.Getenv("NGIRCD"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/sbin/ngircd"); err == nil {
		return "/usr/sbin/ngircd"
	}
	if p, err := exec.LookPath("ngircd"); err == nil {
		return p
	}
	return ""
}

// Require returns the ngircd binary, or fails (CI=true) or skips the test.
func Require(tb testing.TB) string {
	tb.Helper()
	bin := Binary()
	if bin != "" {
		return bin
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("ngircd is not installed (CI=true): install it with scripts/test-deps.sh")
	}
	tb.Skip("ngircd is not installed; set CI=true to make this a failure")
	return ""
}

// Options tune the server.
type Options struct {
	// Password is the server password (PASS); empty for none.
	Password string
}

// Server is a running ngircd owned by a test.
type Server struct {
	Port int
	Addr string // 127.0.0.1:port

	bin  string
	conf string
	dir  string
	tb   testing.TB

	mu  sync.Mutex
	cmd *exec.Cmd
	out *os.File
}

// Start runs ngircd on a free port and stops it at cleanup.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin := Require(tb)
	dir := tb.TempDir()
	port := freeport.Must(tb)
	s := &Server{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, dir: dir, tb: tb,
		conf: filepath.Join(dir, "ngircd.conf")}
	var pass string
	if opts.Password != "" {
		pass = "Password = " + opts.Password + "\n"
	}
	conf := fmt.Sprintf(`[Global]
Name = irc.rcwatch.test
Info = rcwatch test server
Listen = 127.0.0.1
Ports = %d
MotdPhrase = rcwatch test
AdminInfo1 = rcwatch tests
AdminInfo2 = localhost
AdminEMail = root@localhost
%s
[Limits]
MaxConnectionsIP = 0
MaxPenaltyTime = 0
MaxNickLength = 30
PingTimeout = 120
PongTimeout = 30

[Options]
DNS = no
Ident = no
PAM = no
`, port, pass)
	require.NoError(tb, os.WriteFile(s.conf, []byte(conf), 0o644))
	s.start(tb)
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	out, err := os.OpenFile(filepath.Join(s.dir, "ngircd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(tb, err)
	cmd := exec.Command(s.bin, "-n", "-f", s.conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(tb, cmd.Start(), "starting ngircd")
	s.mu.Lock()
	s.cmd, s.out = cmd, out
	s.mu.Unlock()
	// Ready when it accepts a connection (the listener opens after config load).
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "ngircd.log"))
			tb.Fatalf("ngircd on %s not ready after 15s: %v\n%s", s.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that has no readiness event
	}
}

// Stop kills the server's process group and waits for it. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, out := s.cmd, s.out
	s.cmd, s.out = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	_ = out.Close()
}

// Restart stops the server (SIGTERM: it closes every client connection) and
// starts it again on the same port.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Down(tb)
	s.Up(tb)
}

// Down stops the server with SIGTERM (it closes every client connection)
// and waits for it to exit.
func (s *Server) Down(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	s.mu.Lock()
	_ = s.out.Close()
	s.cmd, s.out = nil, nil
	s.mu.Unlock()
}

// Up starts a stopped server again on the same port.
func (s *Server) Up(tb testing.TB) {
	tb.Helper()
	s.start(tb)
}

// Log returns what ngircd wrote so far (for failure messages).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "ngircd.log"))
	return string(b)
}

// Line is one raw line a Client received (without CRLF) and when.
type Line struct {
	Raw string
	At  time.Time
}

// Msg is a parsed PRIVMSG.
type Msg struct {
	Raw    string // the whole line as received, without CRLF
	Nick   string
	Target string
	Text   string
	At     time.Time
}

// Client is a raw IRC client that records every line it receives. It
// answers PING itself.
type Client struct {
	Nick string
	conn net.Conn

	mu      sync.Mutex
	lines   []Line
	changed chan struct{}
	closed  bool
	err     error
}

// Dial registers a client with nick on the server, waiting for the welcome.
// It closes at cleanup.
func Dial(tb testing.TB, addr, nick, password string) *Client {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(tb, err, "dialing IRC server %s", addr)
	c := &Client{Nick: nick, conn: conn, changed: make(chan struct{})}
	tb.Cleanup(c.Close)
	go c.read()
	if password != "" {
		c.Send(tb, "PASS "+password)
	}
	c.Send(tb, "NICK "+nick)
	c.Send(tb, "USER "+nick+" 0 * :rcwatch test client")
	c.WaitLine(tb, 10*time.Second, func(l Line) bool { return fields(l.Raw, 1) == "001" })
	return c
}

// Join joins channel and waits for the end of the names list.
func (c *Client) Join(tb testing.TB, channel string) {
	tb.Helper()
	c.Send(tb, "JOIN "+channel)
	c.WaitLine(tb, 10*time.Second, func(l Line) bool {
		return fields(l.Raw, 1) == "366" && strings.EqualFold(fields(l.Raw, 3), channel)
	})
}

// Send writes one raw line (CRLF is added).
func (c *Client) Send(tb testing.TB, line string) {
	tb.Helper()
	_, err := c.conn.Write([]byte(line + "\r\n"))
	require.NoError(tb, err, "sending %q", line)
}

// Close closes the connection.
func (c *Client) Close() { _ = c.conn.Close() }

func (c *Client) read() {
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := c.conn.Read(tmp)
		now := time.Now()
		if n > 0 {
			buf = append(buf, tmp[:n]...)
			for {
				i := strings.Index(string(buf), "\r\n")
				if i < 0 {
					break
				}
				raw := string(buf[:i])
				buf = buf[i+2:]
				if strings.HasPrefix(raw, "PING ") {
					_, _ = c.conn.Write([]byte("PONG " + raw[5:] + "\r\n"))
				}
				c.mu.Lock()
				c.lines = append(c.lines, Line{Raw: raw, At: now})
				close(c.changed)
				c.changed = make(chan struct{})
				c.mu.Unlock()
			}
		}
		if err != nil {
			c.mu.Lock()
			c.closed, c.err = true, err
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			return
		}
	}
}

// Lines returns a copy of every line received so far.
func (c *Client) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// Messages returns the PRIVMSGs received for target (a channel).
func (c *Client) Messages(target string) []Msg {
	var out []Msg
	for _, l := range c.Lines() {
		if m, ok := ParsePrivmsg(l); ok && strings.EqualFold(m.Target, target) {
			out = append(out, m)
		}
	}
	return out
}

// WaitLine waits until a received line satisfies ok, or fails the test.
func (c *Client) WaitLine(tb testing.TB, timeout time.Duration, ok func(Line) bool) Line {
	tb.Helper()
	var l Line
	c.Wait(tb, timeout, "a matching line", func(lines []Line) bool {
		for _, x := range lines {
			if ok(x) {
				l = x
				return true
			}
		}
		return false
	})
	return l
}

// WaitMessages waits until at least n PRIVMSGs to target arrived.
func (c *Client) WaitMessages(tb testing.TB, target string, n int, timeout time.Duration) []Msg {
	tb.Helper()
	c.Wait(tb, timeout, fmt.Sprintf("%d messages to %s", n, target), func([]Line) bool {
		return len(c.Messages(target)) >= n
	})
	return c.Messages(target)
}

// Wait blocks until cond(lines) holds (checked on every received line) or
// fails the test after timeout.
func (c *Client) Wait(tb testing.TB, timeout time.Duration, what string, cond func([]Line) bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		lines := append([]Line(nil), c.lines...)
		ch, closed, err := c.changed, c.closed, c.err
		c.mu.Unlock()
		if cond(lines) {
			return
		}
		if closed {
			tb.Fatalf("IRC client %s closed while waiting for %s: %v", c.Nick, what, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("IRC client %s: timed out after %v waiting for %s (%d lines received)", c.Nick, timeout, what, len(lines))
		}
	}
}

var errNotPrivmsg = errors.New("not a PRIVMSG")

// ParsePrivmsg parses ":nick!user@host PRIVMSG target :text".
func ParsePrivmsg(l Line) (Msg, bool) {
	m, err := parsePrivmsg(l.Raw)
	if err != nil {
		return Msg{}, false
	}
	m.At = l.At
	return m, true
}

func parsePrivmsg(raw string) (Msg, error) {
	if !strings.HasPrefix(raw, ":") {
		return Msg{}, errNotPrivmsg
	}
	prefix, rest, ok := strings.Cut(raw[1:], " ")
	if !ok {
		return Msg{}, errNotPrivmsg
	}
	cmd, rest, ok := strings.Cut(rest, " ")
	if !ok || cmd != "PRIVMSG" {
		return Msg{}, errNotPrivmsg
	}
	target, text, ok := strings.Cut(rest, " ")
	if !ok {
		return Msg{}, errNotPrivmsg
	}
	text = strings.TrimPrefix(text, ":")
	nick, _, _ := strings.Cut(prefix, "!")
	return Msg{Raw: raw, Nick: nick, Target: target, Text: text}, nil
}

// fields returns the i-th space-separated field of a raw line.
func fields(raw string, i int) string {
	f := strings.Fields(raw)
	if i < len(f) {
		return f[i]
	}
	return ""
}
