package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbor-fabric/arbor/internal/rdb"
	"github.com/arbor-fabric/arbor/internal/resp"
)

// TestCaptureFuzzSeeds records what a real redis-server sends a replica,
// as seed corpora for the fuzz tests of the RESP reader, the stream scanner
// and the RDB verifier: the replies to a replica's handshake, an RDB of a
// few keys of every type, and a replication stream with the commands a
// master rewrites or adds (PXAT, PEXPIREAT, MULTI/EXEC from scripts and
// transactions, SELECT, REPLCONF GETACK, FUNCTION LOAD). It runs only with
// ARBOR_FUZZ_SEEDS=1 and rewrites the files under ../resp/testdata/fuzz
// and ../rdb/testdata/fuzz.
func TestCaptureFuzzSeeds(t *testing.T) {
	if os.Getenv("ARBOR_FUZZ_SEEDS") != "1" {
		t.Skip("set ARBOR_FUZZ_SEEDS=1 to capture the fuzz seed corpora")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	master := Start(t, "--repl-diskless-sync", "no")
	c := master.Client()
	do := func(args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("%v: %v", args, err)
		}
	}

	// The dataset the RDB carries: each type in its small and large
	// encodings, an expiry, an LZF-compressible string.
	do("SET", "str:int", "12345")
	do("SET", "str:emb", "hello")
	do("SET", "str:lzf", strings.Repeat("abcdefgh", 64))
	do("SET", "str:ttl", "v", "EX", "3600")
	do("RPUSH", "list", "a", "b", "1", "-2")
	do("HSET", "hash:small", "f1", "v1", "f2", "2")
	do("SADD", "set:int", 1, 2, 3)
	do("SADD", "set:str", "x", "y")
	do("ZADD", "zset:small", 1, "a", 2.5, "b")
	big := []any{"ZADD", "zset:skip"}
	hbig := []any{"HSET", "hash:table"}
	sbig := []any{"SADD", "set:table"}
	for i := range 130 {
		big = append(big, i, "m"+strconv.Itoa(i))
		hbig = append(hbig, "f"+strconv.Itoa(i), i)
		sbig = append(sbig, "s"+strconv.Itoa(i))
	}
	do(big...)
	do(hbig...)
	do(sbig...)
	do("XADD", "stream", "1-1", "f", "v")
	do("XADD", "stream", "2-1", "f", "w", "g", "x")
	do("XGROUP", "CREATE", "stream", "grp", "0")
	do("XREADGROUP", "GROUP", "grp", "c1", "COUNT", "1", "STREAMS", "stream", ">")
	do("FUNCTION", "LOAD", "#!lua name=seedlib\nredis.register_function('seed_incr', function(keys) return redis.call('incr', keys[1]) end)")

	// A replica's handshake, by hand, without capa eof: the RDB comes in
	// the $len framing and the stream follows it.
	conn, err := net.Dial("tcp", master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var hs []byte
	hs = resp.AppendCommand(hs, "PING")
	hs = resp.AppendCommand(hs, "REPLCONF", "listening-port", "6380")
	hs = resp.AppendCommand(hs, "REPLCONF", "capa", "psync2")
	psync := resp.AppendCommand(nil, "PSYNC", "?", "-1")
	if _, err := conn.Write(hs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var replies []byte
	// PSYNC goes alone once the other replies are in: Redis refuses it
	// with output pending.
	for lines := 0; ; lines++ {
		if lines == 3 {
			if _, err := conn.Write(psync); err != nil {
				t.Fatal(err)
			}
		}
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("handshake replies %q: %v", replies, err)
		}
		replies = append(replies, line...)
		if bytes.HasPrefix(line, []byte("$")) {
			break
		}
	}
	hs = append(hs, psync...)
	hdr := replies[bytes.LastIndexByte(replies[:len(replies)-1], '\n')+1:]
	n, err := strconv.Atoi(strings.TrimSpace(string(hdr[1:])))
	if err != nil {
		t.Fatalf("RDB header %q: %v", hdr, err)
	}
	rdbBytes := make([]byte, n)
	if _, err := io.ReadFull(br, rdbBytes); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(resp.AppendCommand(nil, "REPLCONF", "ACK", "0")); err != nil {
		t.Fatal(err)
	}

	// The stream: rewrites, scripts, transactions, several DBs, GETACK.
	do("SET", "k:ex", "v", "EX", "100")
	do("SET", "k:bin", "a\r\n*1\r\n$4\r\nPING\r\n")
	do("SET", "k:empty", "")
	do("INCRBYFLOAT", "k:float", "1.5")
	do("EXPIRE", "str:emb", "500")
	do("GETEX", "str:int", "PX", "100000")
	do("EVAL", "redis.call('set', KEYS[1], 'a') redis.call('incr', KEYS[2]) return redis.call('lpush', KEYS[3], 'x')", 3, "e:1", "e:2", "e:3")
	do("FCALL", "seed_incr", 1, "f:1")
	pipe := c.TxPipeline()
	pipe.Set(ctx, "tx:1", "1", 0)
	pipe.Del(ctx, "tx:1")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	do("WAIT", 1, 10) // REPLCONF GETACK * in the stream
	c3 := master.Client().Conn()
	defer c3.Close()
	if err := c3.Select(ctx, 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c3.Set(ctx, "db3", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	do("SET", "seed:last", "1")
	var stream []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(stream, []byte("seed:last")) {
		k, err := br.Read(buf)
		if err != nil {
			t.Fatalf("stream %q: %v", stream, err)
		}
		stream = append(stream, buf[:k]...)
	}
	// End at a command boundary: the last command is the SET of seed:last.
	if !bytes.HasSuffix(stream, []byte("$1\r\n1\r\n")) {
		t.Fatalf("stream does not end with the last SET: %q", stream)
	}
	if _, err := rdb.NewVerifier().Write(rdbBytes); err != nil {
		t.Fatalf("captured RDB: %v", err)
	}

	write := func(pkg, fuzz, name string, args ...string) {
		t.Helper()
		dir := filepath.Join("..", pkg, "testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bs := func(b []byte) string { return fmt.Sprintf("[]byte(%q)", b) }
	write("resp", "FuzzReader", "redis-7-stream", bs(stream), "byte('\\x07')")
	write("resp", "FuzzReader", "redis-7-handshake-replies", bs(replies), "byte('\\x00')")
	write("resp", "FuzzReader", "redis-7-replica-handshake", bs(hs), "byte('\\x02')")
	write("resp", "FuzzStreamScannerGarbage", "redis-7-stream", bs(stream), fmt.Sprintf("int(%d)", len(stream)/2))
	write("rdb", "FuzzVerifier", "redis-7-rdb", bs(rdbBytes), "byte('\\x00')")
	write("rdb", "FuzzVerifier", "redis-7-rdb-chunked", bs(rdbBytes), "byte('\\x11')")
	write("rdb", "FuzzVerifier", "minimal-rdb-10", bs(rdb.Minimal(10)), "byte('\\x00')")
	t.Logf("captured: %d handshake reply bytes, %d RDB bytes, %d stream bytes", len(replies), len(rdbBytes), len(stream))
}
