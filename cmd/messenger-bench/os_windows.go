//go:build windows

package main

import (
	"time"

	"golang.org/x/sys/windows"
)

// raiseFDLimit has nothing to raise on Windows, whose sockets are handles
// without a per-process limit of this kind.
func raiseFDLimit(want uint64) uint64 { return want }

// selfCPU returns the user plus kernel CPU time this process has used.
func selfCPU() time.Duration {
	var created, exited, kernel, user windows.Filetime
	if windows.GetProcessTimes(windows.CurrentProcess(), &created, &exited, &kernel, &user) != nil {
		return 0
	}
	// Filetimes count 100 ns; as durations they are read from 1601.
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration(ticks(kernel)+ticks(user)) * 100
}
