//go:build windows

package readapi

import (
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// smallReceiver dials with a receive buffer of n bytes, set before the
// connection is made so that the window it offers is small from the start.
func smallReceiver(n int) net.Dialer {
	return net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
	}}
}

// cpuTime returns the CPU time the process has used, user and kernel.
func cpuTime() time.Duration {
	var created, exited, kernel, user windows.Filetime
	windows.GetProcessTimes(windows.CurrentProcess(), &created, &exited, &kernel, &user)
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration(ticks(kernel)+ticks(user)) * 100
}

// raiseNoFile has nothing to raise: Windows sets no such limit on sockets.
func raiseNoFile(testing.TB) uint64 { return math.MaxInt32 }
