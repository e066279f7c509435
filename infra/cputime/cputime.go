// Package cputime reads the CPU time the process has used, for the load
// tool and the benchmarks that report CPU beside wall time. Where the
// system has no such count (plan9, wasm), Self returns 0.
package cputime
