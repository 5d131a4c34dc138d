// A Go program for `ckpt checkpoint PID` to attach to (built statically, CGO_ENABLED=0): it
// prints the numbers 0 to TICKS-1, one a line, on a 10 ms ticker, then exits. Meanwhile
// eight goroutines work (half of them spinning, which the runtime preempts with SIGURG, half
// sleeping 1 ms at a time on timers) and four sit on OS threads of their own, blocked on a
// channel; before each number, every worker must have moved, and every blocked one must
// answer. Any failure is an ERROR line.
//
// It also holds 32 MiB it filled with bytes that are not zero. Once it finds itself in another
// process (a restart: its PID or its PID namespace changed), it gives the first MiB back to the
// system itself (madvise MADV_DONTNEED, as the runtime does), which must then read as zeros;
// then it lets go of the rest, collects and gives the freed memory back (debug.FreeOSMemory)
// and allocates 32 MiB again, which must read as zeros too. It says on stderr how that went
// ("zeros after the restart: ok", or an ERROR line naming the bytes that are not zero).
//
//	attached [TICKS]
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ticks := 1 << 30
	if len(os.Args) > 1 {
		ticks, _ = strconv.Atoi(os.Args[1])
	}
	runtime.GOMAXPROCS(4)
	var work [8]int64
	for i := range work {
		go func(i int) {
			for {
				atomic.AddInt64(&work[i], 1)
				if i%2 == 1 {
					time.Sleep(time.Millisecond)
				}
			}
		}(i)
	}
	ask := make(chan chan int)
	for i := 0; i < 4; i++ {
		go func(i int) {
			runtime.LockOSThread()
			for reply := range ask {
				reply <- i
			}
		}(i)
	}
	held := make([][]byte, 32)
	x := uint32(2463534242)
	for i := range held {
		held[i] = make([]byte, 1<<20)
		for j := range held[i] {
			// Bytes that do not compress (xorshift), so that the image stores them as they
			// are, and none is zero.
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			held[i][j] = byte(x) | 1
		}
	}
	self := whoami()
	tick := time.NewTicker(10 * time.Millisecond)
	var seen [8]int64
	for n := 0; n < ticks; n++ {
		<-tick.C
		for i := range work {
			for atomic.LoadInt64(&work[i]) == seen[i] {
				time.Sleep(100 * time.Microsecond)
			}
			seen[i] = atomic.LoadInt64(&work[i])
		}
		reply := make(chan int)
		for i := 0; i < 4; i++ {
			ask <- reply
			select {
			case <-reply:
			case <-time.After(10 * time.Second):
				fmt.Println("ERROR a blocked goroutine did not answer")
			}
		}
		fmt.Println(n)
		if held != nil && whoami() != self {
			zeros(held[0])
			held = nil
		}
	}
}

// whoami names this process: its PID and its PID namespace (a restart keeps the PID in a new
// namespace where it can).
func whoami() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return fmt.Sprint(os.Getpid(), ns)
}

// zeros gives memory back to the system and checks that it reads as zeros: `given` (page
// aligned, as every large allocation is) given back with madvise, then whatever the collector
// frees, and fresh allocations.
func zeros(given []byte) {
	bad := 0
	if err := syscall.Madvise(given, syscall.MADV_DONTNEED); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR madvise:", err)
	}
	for _, c := range given {
		if c != 0 {
			bad++
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	fresh := make([][]byte, 32)
	for i := range fresh {
		fresh[i] = make([]byte, 1<<20)
		for _, c := range fresh[i] {
			if c != 0 {
				bad++
			}
		}
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "ERROR %d bytes given back or allocated after the restart are not zero\n", bad)
	} else {
		fmt.Fprintln(os.Stderr, "zeros after the restart: ok")
	}
	runtime.KeepAlive(fresh)
}
