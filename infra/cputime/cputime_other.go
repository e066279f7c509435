//go:build !unix && !windows

package cputime

import "time"

// Self returns 0: this system does not count a process's CPU time.
func Self() time.Duration { return 0 }
