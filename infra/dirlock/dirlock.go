// Package dirlock keeps a data directory to one process at a time: the
// embedded store's SQLite file is written by one process only (its group
// commit, its cache of the log's newest events and its in-process change
// feed know nothing of another), and a second messengerd, or a rebuild run
// beside the server, would project into and serve from tables that the
// other recreates.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File is the name of the lock file in a locked directory.
const File = "messengerd.lock"

// ErrInUse is returned by Lock when another process holds the directory.
var ErrInUse = errors.New("in use by another process")

// Lock takes the directory dir for this process until release is called
// or the process ends, however it ends: the operating system drops the lock
// with the process, so a crash leaves nothing to clean up. The lock file
// names the holder's process id, which the error of a refused Lock repeats.
func Lock(dir string) (release func() error, err error) {
	path := filepath.Join(dir, File)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errLocked) {
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				return nil, fmt.Errorf("data directory %s: %w (pid %s)", dir, ErrInUse, pid)
			}
			return nil, fmt.Errorf("data directory %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The holder's pid, for the next one's error; the lock, not the
	// file's content, is what excludes.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() error {
		f.Truncate(0)
		unlockFile(f)
		return f.Close()
	}, nil
}

// errLocked is what lockFile returns when another process holds the lock.
var errLocked = errors.New("locked")
