//go:build windows

package cputime

import (
	"time"

	"golang.org/x/sys/windows"
)

// Self returns the CPU time this process has used, user and kernel; 0 if
// the system does not say.
func Self() time.Duration {
	var created, exited, kernel, user windows.Filetime
	if windows.GetProcessTimes(windows.CurrentProcess(), &created, &exited, &kernel, &user) != nil {
		return 0
	}
	// Filetimes count 100 ns; as durations they are read from 1601.
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration(ticks(kernel)+ticks(user)) * 100
}
