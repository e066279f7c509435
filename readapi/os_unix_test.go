//go:build unix

package readapi

import (
	"net"
	"syscall"
	"testing"
)

// smallReceiver dials with a receive buffer of n bytes, set before the
// connection is made so that the window it offers is small from the start.
func smallReceiver(n int) net.Dialer {
	return net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
	}}
}

// raiseNoFile lifts the soft limit of open files to the hard one.
func raiseNoFile(tb testing.TB) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	return lim.Cur
}
