package wan

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBridge streams 64 KiB writes one way to a discarding server,
// directly and through a bridge, and reports the process CPU per MiB moved
// (client, bridge and server all run in this process, so compare against
// "direct").
func BenchmarkBridge(b *testing.B) {
	cases := []struct {
		name   string
		direct bool
		opts   []Option
	}{
		{name: "direct", direct: true},
		{name: "unlimited"},
		{name: "latency-1ms", opts: []Option{WithLatency(time.Millisecond)}},
		{name: "latency-20ms", opts: []Option{WithLatency(20 * time.Millisecond)}},
		{name: "buffer-64KiB", opts: []Option{WithBufferSize(64 << 10)}},
		{name: "limit-100Mbit", opts: []Option{WithBandwidth(12_500_000)}},
		{name: "limit-1GiBps", opts: []Option{WithBandwidth(1 << 30)}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			srv := startServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
			addr := srv.Addr()
			if !bc.direct {
				br, err := NewBridge(addr, bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				addr = br.Addr()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			cpu0 := cpuTime(b)
			start := time.Now()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			wall := time.Since(start)
			cpu := cpuTime(b) - cpu0
			mib := float64(b.N) * float64(len(chunk)) / (1 << 20)
			b.ReportMetric(float64(cpu.Microseconds())/mib, "cpu-µs/MiB")
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
