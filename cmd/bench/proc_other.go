//go:build !linux

package main

import (
	"syscall"
	"time"
)

// Elsewhere than Linux there is no VmHWM to read or reset: peak RSS is reported as 0.

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func resetPeakRSS()                   {}
func peakRSSKB() int64                { return 0 }
func selfStatusKB() map[string]int64  { return nil }
func childAttr() *syscall.SysProcAttr { return nil }

func processCPU(int) time.Duration      { return 0 }
func machineTicks() (busy, total int64) { return 0, 0 }
