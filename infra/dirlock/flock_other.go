//go:build !unix && !windows

package dirlock

import "os"

// lockFile does not lock where neither flock(2) nor LockFileEx is (plan9,
// wasm): one process per data directory is then the operator's to keep.
func lockFile(f *os.File) error { return nil }

func unlockFile(f *os.File) error { return nil }
