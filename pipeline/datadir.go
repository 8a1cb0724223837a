package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file in the embedded server's data
// directory; it holds the pid of the process that has the directory.
const LockFile = "rcwatch.lock"

// ErrDataDirInUse is returned by LockDataDir when another process holds the
// directory: two JetStream servers on one store corrupt it.
var ErrDataDirInUse = errors.New("data directory in use")

// DataDirLock is an exclusive lock (flock) on a data directory, held until
// Unlock or the process ends (the kernel releases it even on SIGKILL).
type DataDirLock struct {
	f *os.File
}

// LockDataDir creates dir if needed, checks it is writable, and locks it.
// The errors name the directory and the cause: not creatable, not
// writable, or in use (with the holder's pid when it wrote one).
func LockDataDir(dir string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory %s cannot be created: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" by pid %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is used%s (lock %s); stop that rcwatch or choose another --data-dir",
				ErrDataDirInUse, dir, holder, path)
		}
		return nil, fmt.Errorf("locking data directory %s: %w", dir, err)
	}
	// Our pid, for the message of the next process that tries.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
		}
	} else {
		f.Close()
		return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	// The store itself must be writable too (the lock file may pre-exist).
	probe, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	return &DataDirLock{f: f}, nil
}

// Unlock releases the lock. The lock file stays (removing it would race a
// process that opened it already).
func (l *DataDirLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
