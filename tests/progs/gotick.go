// gotick: a Go program built with cgo (a trivial C function, so that it links dynamically and
// libckpt can be preloaded into it). Its runtime installs a handler for every signal, runs
// goroutines on several threads and drops memory with madvise of its own. Workers take numbers
// from a channel and send back a line each; the main goroutine paces them with a time.Ticker
// and prints the lines in order: `I sum=S twice=T`, then `done`.
package main

/*
static int twice(int x) { return 2 * x; }
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	n := 300
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	work := make(chan int)
	done := make(chan string)
	for w := 0; w < 3; w++ {
		go func() {
			for i := range work {
				// Some garbage each time, so that the collector runs and returns memory.
				parts := make([]int, 0, 1024)
				sum := 0
				for k := 0; k <= i; k++ {
					sum += k
					parts = append(parts, sum)
				}
				done <- fmt.Sprintf("%d sum=%d twice=%d", i, parts[len(parts)-1], int(C.twice(C.int(i))))
			}
		}()
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for i := 0; i < n; i++ {
		<-t.C
		work <- i
		fmt.Println(<-done)
	}
	close(work)
	fmt.Println("done")
}
