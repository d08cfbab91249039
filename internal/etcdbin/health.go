package etcdbin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Healthy asks the /health endpoint of the etcd server at clientURL
// (http://host:port, no TLS): nil once the server has a leader and serves
// a quorum read, as a server started from these binaries does when ready.
func Healthy(clientURL string) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get(clientURL + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("/health: %w", err)
	}
	if body.Health != "true" {
		return fmt.Errorf("/health: %s %s", body.Health, body.Reason)
	}
	return nil
}
