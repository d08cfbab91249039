package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLSConfig secures relay-to-relay gRPC. With CertFile, KeyFile and CAFile
// set, both sides present certificates signed by the CA and check the
// other's (mutual TLS), so a relay cannot be impersonated. Plaintext must be
// asked for explicitly.
type TLSConfig struct {
	CertFile, KeyFile, CAFile string
	// ServerName overrides the name checked in the parent's certificate
	// (default: the host of its address).
	ServerName string
	// Plaintext runs gRPC without TLS. It is refused unless set.
	Plaintext bool
}

// Validate checks that TLS is either fully configured or explicitly off.
func (c *TLSConfig) Validate() error {
	set := c.CertFile != "" || c.KeyFile != "" || c.CAFile != ""
	switch {
	case c.Plaintext && set:
		return errors.New("tls: --plaintext together with --tls-cert/--tls-key/--tls-ca: choose one")
	case c.Plaintext:
		return nil
	case !set:
		return errors.New("tls: relay-to-relay gRPC needs --tls-cert, --tls-key and --tls-ca (mutual TLS), or --plaintext to run without TLS")
	case c.CertFile == "" || c.KeyFile == "" || c.CAFile == "":
		return errors.New("tls: --tls-cert, --tls-key and --tls-ca go together")
	}
	return nil
}

func (c *TLSConfig) load() (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("tls: no certificate in %s", c.CAFile)
	}
	return cert, pool, nil
}

// serverCredentials requires and verifies client certificates.
func (c *TLSConfig) serverCredentials() (credentials.TransportCredentials, error) {
	if c.Plaintext {
		return insecure.NewCredentials(), nil
	}
	cert, pool, err := c.load()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}), nil
}

// ClientCredentials are the gRPC credentials a relay dials another relay
// with: it presents its certificate and verifies the other's (or plaintext,
// when asked for). The relay dials its parent with them, and its static
// mover asks the relays on its --upstream list for their Status.
func (c *TLSConfig) ClientCredentials() (credentials.TransportCredentials, error) {
	if c.Plaintext {
		return insecure.NewCredentials(), nil
	}
	cert, pool, err := c.load()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   c.ServerName,
		MinVersion:   tls.VersionTLS13,
	}), nil
}

// relayURIPrefix begins the URI SAN that names a relay in its certificate:
// arbor://relay/<id>.
const relayURIPrefix = "arbor://relay/"

// identityError refuses a child relay whose certificate does not name the
// relay ID it subscribed with.
type identityError struct {
	ID    string   // the relay ID claimed
	Names []string // the IDs the certificate names
}

// Is makes an identityError ErrIdentityRefused.
func (e *identityError) Is(target error) bool { return target == ErrIdentityRefused }

func (e *identityError) Error() string {
	return fmt.Sprintf("relay id %q is not named by the peer's certificate (it names %v)", e.ID, e.Names)
}

// certRelayIDs returns the relay IDs a verified certificate names: each
// URI SAN arbor://relay/<id>, each DNS SAN, and the subject's Common Name.
func certRelayIDs(cert *x509.Certificate) []string {
	var ids []string
	for _, u := range cert.URIs {
		if id, ok := strings.CutPrefix(u.String(), relayURIPrefix); ok && id != "" {
			ids = append(ids, id)
		}
	}
	ids = append(ids, cert.DNSNames...)
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	return ids
}

// checkPeerIdentity ties a claimed relay ID to the peer's verified
// certificate (mutual TLS): without it any holder of a certificate from the
// CA could subscribe as another relay and end that relay's link. state is
// nil when the connection carries no TLS.
func checkPeerIdentity(id string, state *tls.ConnectionState) error {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return &identityError{ID: id}
	}
	names := certRelayIDs(state.VerifiedChains[0][0])
	if !slices.Contains(names, id) {
		return &identityError{ID: id, Names: names}
	}
	return nil
}
