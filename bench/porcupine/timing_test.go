// Times Porcupine on every history under test_data, one line of JSON per
// file, for raceguard's bench/check.ts (copied next to Porcupine's sources,
// whose test file parses the histories). Each file is checked `rounds`
// times; the fastest round is reported.
package porcupine

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestRaceguardTiming(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv("RACEGUARD_ROUNDS"))
	if err != nil || rounds < 1 {
		rounds = 1
	}
	time1 := func(check func() bool) (bool, float64) {
		best := -1.0
		result := false
		for i := 0; i < rounds; i++ {
			start := time.Now()
			result = check()
			ms := float64(time.Since(start).Microseconds()) / 1000
			if best < 0 || ms < best {
				best = ms
			}
		}
		return result, best
	}
	etcd, _ := filepath.Glob("test_data/jepsen/etcd_*.log")
	for _, file := range etcd {
		events := parseJepsenLog(file)
		ok, ms := time1(func() bool { return CheckEvents(etcdModel, events) })
		fmt.Printf("{\"suite\":\"etcd\",\"file\":%q,\"linearizable\":%t,\"ms\":%.3f}\n", filepath.Base(file), ok, ms)
	}
	kv, _ := filepath.Glob("test_data/kv/*.txt")
	for _, file := range kv {
		events := parseKvLog(file)
		ok, ms := time1(func() bool { return CheckEvents(kvModel, events) })
		fmt.Printf("{\"suite\":\"kv\",\"file\":%q,\"linearizable\":%t,\"ms\":%.3f}\n", filepath.Base(file), ok, ms)
	}
}
