//go:build unix

package main

import "syscall"

// raiseFDLimit lifts RLIMIT_NOFILE to want if it may (root may raise the
// hard limit), else to the hard limit, and returns the limit now.
func raiseFDLimit(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return want // unknown: do not warn
	}
	if rl.Cur >= want {
		return rl.Cur
	}
	if rl.Max < want {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return want
		}
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}
