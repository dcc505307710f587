package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux 4.0+), so the next peak is a case's own.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSKB is VmHWM, the peak resident set size since start or the last reset, in KiB.
func peakRSSKB() int64 { return selfStatusKB()["VmHWM"] }

// selfStatusKB is this process's memory figures from /proc/self/status (VmHWM, VmRSS, RssAnon,
// RssFile, …), in KiB.
func selfStatusKB() map[string]int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	return parseStatusKB(b)
}

// childAttr makes a child process die with this one, so an interrupted run leaves nothing behind.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

// clockTick is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on every Linux Go runs on.
const clockTick = 10 * time.Millisecond

// processCPU is the user and system CPU time of another process, from /proc/<pid>/stat.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed: utime is the 14th field
	// of the line, the 12th after the name's closing parenthesis.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

// machineTicks is the CPU time of every core so far, busy and in all, from /proc/stat: the
// share busy during a case says how much of the machine the case (and whoever else shares
// it) left idle.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:min(len(f), 9)] { // guest times are already in user and nice
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
