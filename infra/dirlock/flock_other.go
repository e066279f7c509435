//go:build !unix

package dirlock

import "os"

// lockFile does not lock where flock(2) is missing (Windows): one process
// per data directory is then the operator's to keep.
func lockFile(f *os.File) error { return nil }

func unlockFile(f *os.File) error { return nil }
