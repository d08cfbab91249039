package redistest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoadOptions selects what LoadAllTypes writes.
type LoadOptions struct {
	// SmallKeys is how many small string keys ("small:N") go into DB 0.
	SmallKeys int
	// Big adds "str:big", a string of 32 MiB + 1 byte.
	Big bool
	// FlushAll first writes a few keys to DBs 0 and 3 and then issues
	// FLUSHALL, so the stream carries one.
	FlushAll bool
	// Seed drives every generated value: equal options write equal data.
	Seed int64
}

const (
	// batchSize is the most commands sent in one pipeline.
	batchSize = 512
	// bigSize is the size of the Big string: just over 32 MiB.
	bigSize = 32<<20 + 1
	// soonTTL is the lifetime of the keys that expire during the load.
	soonTTL = 50 * time.Millisecond
)

// arborLib is the function library LoadAllTypes loads: one write
// function and one read-only function.
const arborLib = `#!lua name=arborlib
redis.register_function('arbor_bump', function(keys, args)
  redis.call('incr', keys[1])
  return redis.call('rpush', keys[2], args[1])
end)
redis.register_function{
  function_name = 'arbor_get',
  callback = function(keys, args) return redis.call('get', keys[1]) end,
  flags = {'no-writes'},
}
`

// evalMulti is a script with three effects, which Redis 7.0 replicates as
// MULTI, set, incr, lpush, EXEC.
const evalMulti = `redis.call('set', KEYS[1], ARGV[1])
redis.call('incr', KEYS[2])
redis.call('lpush', KEYS[3], ARGV[1])
return 3`

// LoadAllTypes writes a deterministic mix that covers every Redis 7.0 data
// type and encoding, and the commands the master rewrites on the
// replication stream, across DBs 0 to 3:
//   - strings: int, embstr, raw, LZF-compressible, bitmap, HyperLogLog,
//     INCRBYFLOAT, and with o.Big one value over 32 MiB;
//   - lists: small, over 128 elements, with 20 KiB elements, LSET, LINSERT,
//     LMOVE, LTRIM;
//   - hashes (listpack; hashtable by count and by value size), sets
//     (intset; hashtable by count and by member type), sorted sets
//     (listpack; skiplist by count and by member size), a geo set;
//   - a stream of 300 entries in several listpack nodes, two consumer groups, a PEL from
//     XREADGROUP, XACK, XCLAIM, XDEL and XTRIM, and an emptied stream;
//   - o.SmallKeys small strings;
//   - expiries by SET EX/PX, EXPIRE, PEXPIRE, EXPIREAT, GETEX and KEEPTTL,
//     and two keys that expire during the load, so the master replicates a
//     DEL for each;
//   - MULTI/EXEC, EVAL with one and with three effects, FUNCTION LOAD and
//     FCALL, MOVE, COPY … DB, FLUSHDB on DB 1 after filling it, SWAPDB 2 3
//     and, with o.FlushAll, FLUSHALL.
//
// It uses pipelines and leaves c's connections on c's own DB. It may be
// called again on the same server: keys are overwritten and the function
// library replaced.
func LoadAllTypes(ctx context.Context, c *redis.Client, o LoadOptions) error {
	home := c.Options().DB
	r := rand.New(rand.NewPCG(uint64(o.Seed), 0xa4b0))
	run := func(db int, cmds [][]any) error { return runOn(ctx, c, home, db, cmds) }

	if o.FlushAll {
		if err := run(0, junk("flushall", 50)); err != nil {
			return err
		}
		if err := run(3, junk("flushall", 50)); err != nil {
			return err
		}
		if err := run(0, [][]any{{"FLUSHALL"}}); err != nil {
			return err
		}
	}

	steps := [][][]any{
		stringCmds(r),
		listCmds(r),
		hashCmds(r),
		setCmds(r),
		zsetCmds(r),
		streamCmds(r, "stream", 300),
		smallKeyCmds(r, o.SmallKeys),
		txCmds(r),
		scriptCmds(r),
	}
	for _, cmds := range steps {
		if err := run(0, cmds); err != nil {
			return err
		}
	}
	if o.Big {
		if err := run(0, [][]any{{"SET", "str:big", bigValue(r)}}); err != nil {
			return err
		}
	}

	soon := time.Now()
	if err := run(0, expiryCmds(r)); err != nil {
		return err
	}

	// DB 1: filled, flushed, filled again. DBs 2 and 3: filled, swapped.
	if err := run(1, junk("flushdb", 200)); err != nil {
		return err
	}
	if err := run(1, [][]any{{"FLUSHDB"}}); err != nil {
		return err
	}
	for db := 1; db <= 3; db++ {
		if err := run(db, mixCmds(r, "db"+strconv.Itoa(db))); err != nil {
			return err
		}
	}
	if err := run(0, [][]any{
		{"SET", "move:me", val(r, 10)},
		{"MOVE", "move:me", 1},
		{"COPY", "str:raw", "copy:raw", "DB", 2, "REPLACE"},
		{"SWAPDB", 2, 3},
	}); err != nil {
		return err
	}

	// Let the short-lived keys expire, then touch them: a lookup makes the
	// master delete and replicate DEL even if its expire cycle has not.
	if wait := time.Until(soon.Add(soonTTL + 10*time.Millisecond)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return run(0, [][]any{{"EXISTS", "exp:soon", "exp:soon-pexpire"}})
}

// runOn sends cmds to DB db in pipelines of at most batchSize commands,
// never splitting a MULTI … EXEC. Each pipeline SELECTs db first and home
// last, so the pooled connection goes back on the client's DB.
func runOn(ctx context.Context, c *redis.Client, home, db int, cmds [][]any) error {
	for len(cmds) > 0 {
		n, depth := 0, 0
		for n < len(cmds) && (n < batchSize || depth > 0) {
			switch strings.ToUpper(fmt.Sprint(cmds[n][0])) {
			case "MULTI":
				depth++
			case "EXEC", "DISCARD":
				depth--
			}
			n++
		}
		if err := runBatch(ctx, c, home, db, cmds[:n]); err != nil {
			return err
		}
		cmds = cmds[n:]
	}
	return nil
}

func runBatch(ctx context.Context, c *redis.Client, home, db int, cmds [][]any) error {
	pipe := c.Pipeline()
	if db != home {
		pipe.Do(ctx, "SELECT", db)
	}
	for _, args := range cmds {
		pipe.Do(ctx, args...)
	}
	if db != home {
		pipe.Do(ctx, "SELECT", home)
	}
	res, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	for _, cmd := range res {
		if cerr := cmd.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) {
			return fmt.Errorf("db %d: %s: %w", db, brief(cmd.Args()), cerr)
		}
	}
	return fmt.Errorf("db %d: pipeline: %w", db, err)
}

// brief renders a command for an error message, shortening long arguments.
func brief(args []any) string {
	parts := make([]string, 0, min(len(args), 6))
	for i, a := range args {
		if i == 5 {
			parts = append(parts, "…")
			break
		}
		s := fmt.Sprint(a)
		if len(s) > 32 {
			s = s[:32] + "…"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// val returns n random alphanumeric characters.
func val(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// bigValue returns bigSize bytes in 4 KiB blocks, each 3 KiB taken from
// a random pool at a random offset and 1 KiB of one repeated byte, so LZF
// compresses it partly. Whole-block copies keep it fast under -race.
func bigValue(r *rand.Rand) []byte {
	pool := make([]byte, 64<<10)
	for i := 0; i < len(pool); i += 8 {
		binary.LittleEndian.PutUint64(pool[i:], r.Uint64())
	}
	fill := bytes.Repeat([]byte{'z'}, 1024)
	b := make([]byte, 0, bigSize)
	for len(b) < bigSize {
		off := r.IntN(len(pool) - 3072)
		b = append(b, pool[off:off+3072]...)
		b = append(b, fill...)
	}
	return b[:bigSize]
}

func junk(prefix string, n int) [][]any {
	cmds := make([][]any, 0, n)
	for i := range n {
		cmds = append(cmds, []any{"SET", prefix + ":junk:" + strconv.Itoa(i), i})
	}
	return cmds
}

func stringCmds(r *rand.Rand) [][]any {
	hll := []any{"PFADD", "str:hll"}
	for i := range 200 {
		hll = append(hll, "member-"+strconv.Itoa(i))
	}
	return [][]any{
		{"SET", "str:int", 12345},
		{"INCR", "str:int"},
		{"INCRBY", "str:int", 1000},
		{"DECR", "str:int"},
		{"SET", "str:neg", -987654321},
		{"SET", "str:int64", int64(1) << 62},
		{"SET", "str:embstr", val(r, 20)},
		{"SET", "str:raw", val(r, 200)},
		{"APPEND", "str:raw", val(r, 50)},
		{"SET", "str:lzf", strings.Repeat("arbor-"+val(r, 4), 300)},
		{"SETRANGE", "str:range", 10, "xyz"},
		{"SET", "str:float", "3.5"},
		{"INCRBYFLOAT", "str:float", "1.25"},
		{"INCRBYFLOAT", "str:float", "-0.125"},
		{"SETBIT", "str:bitmap", 1000, 1},
		{"SETBIT", "str:bitmap", 7, 1},
		hll,
		{"MSET", "str:m1", val(r, 8), "str:m2", val(r, 8), "str:m3", val(r, 8)},
		{"SETNX", "str:nx", val(r, 8)},
		{"GETDEL", "str:m3"},
		{"SET", "str:empty", ""},
	}
}

func listCmds(r *rand.Rand) [][]any {
	cmds := [][]any{
		{"DEL", "list:small", "list:big", "list:bigelem", "list:moved"},
		{"RPUSH", "list:small", "a", "b", "c", "d", "e", "f"},
		{"LPUSH", "list:small", 1, 2, 3},
		{"LSET", "list:small", 0, "set-by-lset"},
		{"LINSERT", "list:small", "BEFORE", "c", "inserted"},
	}
	for i := 0; i < 1000; i += 100 {
		push := []any{"RPUSH", "list:big"}
		for j := range 100 {
			if (i+j)%3 == 0 {
				push = append(push, i+j)
			} else {
				push = append(push, val(r, 12))
			}
		}
		cmds = append(cmds, push)
	}
	for range 4 {
		cmds = append(cmds, []any{"RPUSH", "list:bigelem", val(r, 20<<10)})
	}
	return append(cmds,
		[]any{"LTRIM", "list:big", 5, 904},
		[]any{"LPOP", "list:big", 3},
		[]any{"RPOPLPUSH", "list:big", "list:small"},
		[]any{"LMOVE", "list:small", "list:moved", "LEFT", "RIGHT"},
		[]any{"LREM", "list:small", 0, "e"},
	)
}

func hashCmds(r *rand.Rand) [][]any {
	small := []any{"HSET", "hash:small"}
	for i := range 10 {
		small = append(small, "f"+strconv.Itoa(i), val(r, 10))
	}
	cmds := [][]any{{"DEL", "hash:small", "hash:big", "hash:longval"}, small}
	// Over hash-max-listpack-entries (512): a hashtable.
	for i := 0; i < 600; i += 100 {
		big := []any{"HSET", "hash:big"}
		for j := range 100 {
			big = append(big, "field:"+strconv.Itoa(i+j), val(r, 16))
		}
		cmds = append(cmds, big)
	}
	return append(cmds,
		[]any{"HSET", "hash:longval", "short", "v", "long", val(r, 100)},
		[]any{"HINCRBY", "hash:small", "counter", 5},
		[]any{"HINCRBYFLOAT", "hash:small", "float", "2.5"},
		[]any{"HSETNX", "hash:small", "nx", "v"},
		[]any{"HDEL", "hash:big", "field:0", "field:1"},
	)
}

func setCmds(r *rand.Rand) [][]any {
	ints := []any{"SADD", "set:int"}
	for i := range 100 {
		ints = append(ints, i*7)
	}
	bigints := []any{"SADD", "set:bigint"}
	for i := range 600 {
		bigints = append(bigints, i)
	}
	strs := []any{"SADD", "set:str"}
	for range 10 {
		strs = append(strs, val(r, 6))
	}
	big := []any{"SADD", "set:big"}
	for range 300 {
		big = append(big, val(r, 10))
	}
	return [][]any{
		{"DEL", "set:int", "set:bigint", "set:str", "set:big", "set:moved"},
		ints, bigints, strs, big,
		{"SADD", "set:str", "fixed-member"},
		{"SREM", "set:int", 0, 7, 14},
		{"SMOVE", "set:str", "set:moved", "fixed-member"},
		{"SINTERSTORE", "set:inter", "set:int", "set:bigint"},
		{"SUNIONSTORE", "set:union", "set:str", "set:moved"},
		{"SDIFFSTORE", "set:diff", "set:bigint", "set:int"},
	}
}

// score returns a deterministic score with a fraction that is exact in
// binary, so every server prints it the same.
func score(r *rand.Rand) string {
	return strconv.Itoa(r.IntN(10000)) + "." + strconv.Itoa(r.IntN(4)*25)
}

func zsetCmds(r *rand.Rand) [][]any {
	small := []any{"ZADD", "zset:small"}
	for i := range 20 {
		small = append(small, score(r), "m"+strconv.Itoa(i))
	}
	cmds := [][]any{{"DEL", "zset:small", "zset:big", "zset:longmember", "geo"}, small}
	for i := 0; i < 300; i += 100 {
		big := []any{"ZADD", "zset:big"}
		for j := range 100 {
			big = append(big, score(r), "member:"+strconv.Itoa(i+j))
		}
		cmds = append(cmds, big)
	}
	return append(cmds,
		[]any{"ZADD", "zset:longmember", 1, val(r, 100), 2, "short"},
		[]any{"ZINCRBY", "zset:small", "2.5", "m0"},
		[]any{"ZREM", "zset:big", "member:0"},
		[]any{"ZPOPMIN", "zset:big", 2},
		[]any{"ZREMRANGEBYSCORE", "zset:big", "-inf", "(100"},
		[]any{"ZUNIONSTORE", "zset:union", 2, "zset:small", "zset:big", "WEIGHTS", 1, 2},
		[]any{"GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"},
	)
}

// streamCmds builds a stream of n entries (IDs 1-1 to 1-n) with two
// consumer groups, a PEL and an emptied companion stream.
func streamCmds(r *rand.Rand, key string, n int) [][]any {
	cmds := [][]any{{"DEL", key, key + ":empty"}}
	for i := 1; i <= n; i++ {
		add := []any{"XADD", key, "1-" + strconv.Itoa(i)}
		for f := range 1 + i%3 {
			add = append(add, "f"+strconv.Itoa(f), val(r, 8))
		}
		cmds = append(cmds, add)
	}
	return append(cmds,
		[]any{"XGROUP", "CREATE", key, "g1", "0"},
		[]any{"XGROUP", "CREATE", key, "g2", "$"},
		[]any{"XGROUP", "CREATECONSUMER", key, "g2", "dave"},
		[]any{"XREADGROUP", "GROUP", "g1", "alice", "COUNT", 10, "STREAMS", key, ">"},
		[]any{"XREADGROUP", "GROUP", "g1", "bob", "COUNT", 5, "STREAMS", key, ">"},
		[]any{"XACK", key, "g1", "1-1", "1-2", "1-3"},
		[]any{"XCLAIM", key, "g1", "carol", 0, "1-4", "1-5"},
		[]any{"XDEL", key, "1-100", "1-101"},
		[]any{"XTRIM", key, "MAXLEN", n * 5 / 6},
		[]any{"XADD", key + ":empty", "5-1", "f", "v"},
		[]any{"XDEL", key + ":empty", "5-1"},
	)
}

func smallKeyCmds(r *rand.Rand, n int) [][]any {
	cmds := make([][]any, 0, n)
	for i := range n {
		k := "small:" + strconv.Itoa(i)
		if i%2 == 0 {
			cmds = append(cmds, []any{"SET", k, i})
		} else {
			cmds = append(cmds, []any{"SET", k, val(r, 8)})
		}
	}
	return cmds
}

func txCmds(r *rand.Rand) [][]any {
	return [][]any{
		{"MULTI"},
		{"SET", "tx:a", val(r, 8)},
		{"INCR", "tx:counter"},
		{"LPUSH", "tx:list", "a", "b"},
		{"HSET", "tx:hash", "f", val(r, 8)},
		{"EXEC"},
		{"MULTI"},
		{"INCRBY", "tx:counter", 10},
		{"SADD", "tx:set", "a"},
		{"EXPIRE", "tx:a", 3600},
		{"EXEC"},
	}
}

func scriptCmds(r *rand.Rand) [][]any {
	return [][]any{
		{"EVAL", evalMulti, 3, "lua:str", "lua:counter", "lua:list", val(r, 8)},
		{"EVAL", "return redis.call('incrby', KEYS[1], ARGV[1])", 1, "lua:single", 5},
		{"EVAL", "return redis.call('get', KEYS[1])", 1, "lua:str"},
		{"FUNCTION", "LOAD", "REPLACE", arborLib},
		{"FCALL", "arbor_bump", 2, "fn:counter", "fn:list", val(r, 8)},
		{"FCALL_RO", "arbor_get", 1, "fn:counter"},
	}
}

// farFuture is 2100-01-01 in Unix seconds, for deterministic EXPIREAT.
const farFuture = 4102444800

func expiryCmds(r *rand.Rand) [][]any {
	return [][]any{
		{"SET", "exp:ex", val(r, 8), "EX", 3600},
		{"SET", "exp:px", val(r, 8), "PX", 3600000},
		{"SET", "exp:expire", val(r, 8)},
		{"EXPIRE", "exp:expire", 3600},
		{"SET", "exp:pexpire", val(r, 8)},
		{"PEXPIRE", "exp:pexpire", 3600000},
		{"SET", "exp:expireat", val(r, 8)},
		{"EXPIREAT", "exp:expireat", farFuture},
		{"SET", "exp:getex", val(r, 8)},
		{"GETEX", "exp:getex", "EX", 3600},
		{"SET", "exp:persist", val(r, 8), "EX", 3600},
		{"GETEX", "exp:persist", "PERSIST"},
		{"SET", "exp:keepttl", val(r, 8), "EX", 3600},
		{"SET", "exp:keepttl", val(r, 8), "KEEPTTL"},
		{"HSET", "exp:hash", "f", val(r, 8)},
		{"EXPIRE", "exp:hash", 3600},
		{"SET", "exp:soon", val(r, 8), "PX", soonTTL.Milliseconds()},
		{"SET", "exp:soon-pexpire", val(r, 8)},
		{"PEXPIRE", "exp:soon-pexpire", soonTTL.Milliseconds()},
	}
}

// mixCmds writes one key of each type under prefix.
func mixCmds(r *rand.Rand, prefix string) [][]any {
	p := prefix + ":"
	cmds := [][]any{
		{"DEL", p + "list", p + "hash", p + "set", p + "zset"},
		{"SET", p + "str", val(r, 12)},
		{"SET", p + "int", r.IntN(1000)},
		{"RPUSH", p + "list", val(r, 5), val(r, 5), 42},
		{"HSET", p + "hash", "a", val(r, 5), "b", 7},
		{"SADD", p + "set", 1, 2, 3},
		{"ZADD", p + "zset", 1, "x", "2.5", "y"},
		{"SET", p + "ttl", val(r, 5), "EX", 3600},
		{"MULTI"},
		{"INCR", p + "counter"},
		{"SET", p + "tx", val(r, 5)},
		{"EXEC"},
	}
	return append(cmds, streamCmds(r, p+"stream", 20)...)
}

// WriteLoad runs write traffic on c, a mix of SET, INCR, LPUSH (with LTRIM
// keeping lists short) and HSET on "wl:" keys, in pipelined batches, until
// ctx ends or maxOps commands are done (maxOps <= 0: no limit). It returns
// the number of acknowledged commands; commands of a batch cut short are
// not counted, though some may have been applied. The end of ctx is not an
// error; a failed batch (for example the server was killed) is.
func WriteLoad(ctx context.Context, c *redis.Client, maxOps int) (int, error) {
	const perBatch = 64
	ops := 0
	for i := 0; maxOps <= 0 || ops < maxOps; {
		if ctx.Err() != nil {
			return ops, nil
		}
		n := perBatch
		if maxOps > 0 {
			n = min(n, maxOps-ops)
		}
		pipe := c.Pipeline()
		for range n {
			i++
			switch i % 5 {
			case 0:
				pipe.Set(ctx, "wl:str:"+strconv.Itoa(i%1024), i, 0)
			case 1:
				pipe.Incr(ctx, "wl:counter")
			case 2:
				pipe.LPush(ctx, "wl:list:"+strconv.Itoa(i%8), i)
			case 3:
				pipe.HSet(ctx, "wl:hash:"+strconv.Itoa(i%16), "f"+strconv.Itoa(i%128), i)
			case 4:
				pipe.LTrim(ctx, "wl:list:"+strconv.Itoa(i%8), 0, 99)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			if ctx.Err() != nil {
				return ops, nil
			}
			return ops, fmt.Errorf("write load after %d ops: %w", ops, err)
		}
		ops += n
	}
	return ops, nil
}
