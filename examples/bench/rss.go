package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

var flagRSS = flag.String("rss", "", "memory mode: build and train only this method (a name as in the table, "+
	"e.g. \"base (SGD)\" or ForwardDifference), -warmup + -rounds steps, and print the process's peak resident "+
	"set (VmHWM) with the parameter bytes; run one process per method (examples/bench/rss.sh)")

// resetPeakRSS makes VmHWM start again from the present resident set (Linux: 5 into /proc/self/clear_refs), so
// that peakRSS measures the training steps apart from graph compilation.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM of /proc/self/status).
func peakRSS() (int64, error) { return statusBytes("VmHWM:") }

// statusBytes returns the field (e.g. "VmRSS:") of /proc/self/status in bytes.
func statusBytes(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, found := strings.CutPrefix(sc.Text(), field); found {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// printRSS prints the -rss line of m: method, backend, the peak RSS of the process (compilation included), the
// peak RSS during the timed steps (stepPeak, after resetPeakRSS; 0 if it failed), the parameter bytes and the
// resident set before the timed steps (before).
func printRSS(m *method, description string, whole, before int64) {
	rss, err := peakRSS()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -rss: %v\n", err)
		os.Exit(1)
	}
	var params int64
	for v := range m.ctx.IterVariables() {
		if v.Trainable {
			params += int64(v.Shape().Memory())
		}
	}
	fmt.Printf("rss\t%s\t%s\t%s, batch %d\tpeak_rss_bytes=%d\tparam_bytes=%d\tsteps_peak_rss_bytes=%d\t"+
		"rss_before_steps_bytes=%d\n", m.name,
		describe(m), description, *flagBatch, max(whole, rss), params, rss, before)
}
