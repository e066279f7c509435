//go:build windows

package readapi

import (
	"math"
	"net"
	"syscall"
	"testing"
)

// smallReceiver dials with a receive buffer of n bytes, set before the
// connection is made so that the window it offers is small from the start.
func smallReceiver(n int) net.Dialer {
	return net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
	}}
}

// raiseNoFile has nothing to raise: Windows sets no such limit on sockets.
func raiseNoFile(testing.TB) uint64 { return math.MaxInt32 }
