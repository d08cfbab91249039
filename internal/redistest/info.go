package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Info runs INFO section ("" for the default sections) and returns its
// fields as key -> value. Section headers and blank lines are dropped.
// Lines with compound values, such as "slave0:ip=…,port=…,offset=…" or
// "db0:keys=…,expires=…", keep the raw text after the first colon.
func (s *Server) Info(ctx context.Context, section string) (map[string]string, error) {
	c := s.Client()
	var (
		text string
		err  error
	)
	if section == "" {
		text, err = c.Info(ctx).Result()
	} else {
		text, err = c.Info(ctx, section).Result()
	}
	if err != nil {
		return nil, fmt.Errorf("info %s on %s: %w", section, s.Addr, err)
	}
	return parseInfo(text), nil
}

func parseInfo(text string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// InfoInt returns one integer field of INFO section.
func (s *Server) InfoInt(ctx context.Context, section, key string) (int64, error) {
	m, err := s.Info(ctx, section)
	if err != nil {
		return 0, err
	}
	return infoInt(m, key)
}

func infoInt(m map[string]string, key string) (int64, error) {
	v, ok := m[key]
	if !ok {
		return 0, fmt.Errorf("info has no field %q", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("info field %s: %w", key, err)
	}
	return n, nil
}

// Digest returns DEBUG DIGEST: a hash over every key, value and the
// presence of an expiry in all databases (40 zeros when empty). Functions
// are not part of it.
func (s *Server) Digest(ctx context.Context) (string, error) {
	d, err := s.Client().Do(ctx, "DEBUG", "DIGEST").Text()
	if err != nil {
		return "", fmt.Errorf("debug digest on %s: %w", s.Addr, err)
	}
	return d, nil
}

// ReplicaOf runs REPLICAOF host port. Restart keeps the server a replica
// of that master.
func (s *Server) ReplicaOf(ctx context.Context, host string, port int) error {
	p := strconv.Itoa(port)
	if err := s.Client().Do(ctx, "REPLICAOF", host, p).Err(); err != nil {
		return fmt.Errorf("replicaof %s %s on %s: %w", host, p, s.Addr, err)
	}
	s.mu.Lock()
	s.replicaOf = []string{host, p}
	s.mu.Unlock()
	return nil
}

// ReplicaOfNoOne runs REPLICAOF NO ONE, turning the server into a master.
func (s *Server) ReplicaOfNoOne(ctx context.Context) error {
	if err := s.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		return fmt.Errorf("replicaof no one on %s: %w", s.Addr, err)
	}
	s.mu.Lock()
	s.replicaOf = nil
	s.mu.Unlock()
	return nil
}
