//go:build windows

package dirlock

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockRange is the byte the lock covers: one past 4 GiB, far beyond the
// pid the file holds. Windows' locks are mandatory, so a lock over the pid
// would keep the refused process from reading whom it was refused by; a
// range past the end of a file may be locked.
var lockRange = windows.Overlapped{OffsetHigh: 1}

// lockFile takes an exclusive LockFileEx on f without waiting. The lock
// belongs to the handle: a second Lock in the same process, through
// another open, is refused as another process's would be. Windows drops it
// when the process ends, however it ends.
func lockFile(f *os.File) error {
	ol := lockRange
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}

func unlockFile(f *os.File) error {
	ol := lockRange
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
