package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

const (
	// dialTimeout bounds one connection attempt.
	dialTimeout = 2 * time.Second
	// commandTimeout bounds one control command and its reply.
	commandTimeout = 10 * time.Second
	// digestTimeout bounds DEBUG DIGEST, which reads the whole dataset
	// (about 10 s per GiB on a small machine).
	digestTimeout = 10 * time.Minute
)

// conn is a control connection: one command at a time, waiting for each
// reply. It is not safe for concurrent use.
type conn struct {
	addr    string
	nc      net.Conn
	rd      *resp.Reader
	buf     []byte
	timeout time.Duration // per command; 0 means commandTimeout
}

func dial(ctx context.Context, addr string) (*conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{addr: addr, nc: nc, rd: resp.NewReader(bufio.NewReader(nc))}, nil
}

func (c *conn) close() { c.nc.Close() }

// do sends one command and returns its reply; an error reply is returned as
// an error.
func (c *conn) do(args ...string) (resp.Value, error) {
	timeout := c.timeout
	if timeout == 0 {
		timeout = commandTimeout
	}
	c.nc.SetDeadline(time.Now().Add(timeout))
	c.buf = resp.AppendCommand(c.buf[:0], args...)
	if _, err := c.nc.Write(c.buf); err != nil {
		return resp.Value{}, fmt.Errorf("%s %s: %w", c.addr, args[0], err)
	}
	v, err := c.rd.ReadReply()
	if err != nil {
		return resp.Value{}, fmt.Errorf("%s %s: %w", c.addr, args[0], err)
	}
	if err := v.Err(); err != nil {
		return resp.Value{}, fmt.Errorf("%s %s: %w", c.addr, args[0], err)
	}
	return v, nil
}

// info runs INFO section and returns its fields.
func (c *conn) info(section string) (map[string]string, error) {
	v, err := c.do("INFO", section)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for _, line := range strings.Split(string(v.Str), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, val, ok := strings.Cut(line, ":"); ok {
			m[k] = val
		}
	}
	return m, nil
}

// query runs one command on a fresh connection to addr.
func query(ctx context.Context, addr string, args ...string) (resp.Value, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return resp.Value{}, err
	}
	defer c.close()
	return c.do(args...)
}

// infoOn runs INFO section on a fresh connection to addr.
func infoOn(ctx context.Context, addr, section string) (map[string]string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.info(section)
}

// infoInt returns one integer field of m.
func infoInt(m map[string]string, key string) (int64, error) {
	v, ok := m[key]
	if !ok {
		return 0, fmt.Errorf("INFO has no %s", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO %s=%q: %w", key, v, err)
	}
	return n, nil
}
