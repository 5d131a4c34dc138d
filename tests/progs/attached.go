// A Go program for `ckpt checkpoint PID` to attach to (built statically, CGO_ENABLED=0): it
// prints the numbers 0 to TICKS-1, one a line, on a 10 ms ticker, then exits. Meanwhile
// eight goroutines work (half of them spinning, which the runtime preempts with SIGURG, half
// sleeping 1 ms at a time on timers) and four sit on OS threads of their own, blocked on a
// channel; before each number, every worker must have moved, and every blocked one must
// answer. Any failure is an ERROR line.
//
//	attached [TICKS]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
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
	}
}
