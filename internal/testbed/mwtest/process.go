package mwtest

// Process supervision: php -S in its own process group, readiness, and a
// Close that leaves no worker behind.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serve starts php -S in its own process group (PHP_CLI_SERVER_WORKERS
// forks workers that outlive a SIGTERM to the parent; Close kills the group).
func (w *Wiki) serve(conf string) error {
	logf, err := os.Create(filepath.Join(w.Dir, "server.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("php", "-S", "127.0.0.1:"+strconv.Itoa(w.Port), "-t", InstallPath)
	cmd.Env = append(os.Environ(), "MW_CONFIG_FILE="+conf, "PHP_CLI_SERVER_WORKERS=4")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting php -S: %w", err)
	}
	w.cmd, w.logf, w.exited = cmd, logf, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	return nil
}

// waitReady polls the API until it answers siteinfo.
func (w *Wiki) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	delay := 10 * time.Millisecond
	for {
		resp, err := hc.Get(w.APIURL + "?action=query&meta=siteinfo&format=json&formatversion=2")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"general"`) {
				return nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, tail(body, 300))
		}
		select {
		case <-w.exited:
			return fmt.Errorf("php -S exited: %s", w.ServerLog(2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MediaWiki not ready after %s: %w; server log: %s", timeout, err, w.ServerLog(2000))
		}
		time.Sleep(delay) // polling interval, not synchronisation
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// Close stops the server's whole process group.
func (w *Wiki) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.cmd == nil {
		return nil
	}
	w.closed = true
	pgid := w.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-w.exited
	}
	// The workers are not the leader: wait until none of the group is alive
	// (zombies left for init to reap do not count), killing after a grace.
	deadline := time.Now().Add(5 * time.Second)
	killed := false
	for groupAlive(pgid) {
		if !killed && time.Now().After(deadline.Add(-4*time.Second)) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killed = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("php -S process group %d still alive after SIGKILL", pgid)
		}
		time.Sleep(10 * time.Millisecond) // polling the process table
	}
	if w.logf != nil {
		w.logf.Close()
	}
	return nil
}

// groupAlive reports whether a process of group pgid is alive (not a zombie).
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may contain spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// ServerLog returns the last n bytes of php -S's output.
func (w *Wiki) ServerLog(n int) string {
	b, _ := os.ReadFile(filepath.Join(w.Dir, "server.log"))
	return tail(b, n)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
