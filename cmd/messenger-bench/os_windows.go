//go:build windows

package main

// raiseFDLimit has nothing to raise on Windows, whose sockets are handles
// without a per-process limit of this kind.
func raiseFDLimit(want uint64) uint64 { return want }
