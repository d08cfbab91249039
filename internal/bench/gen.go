package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of writes of the realistic workload ("arbor bench tree").
const (
	// KindProfile is SET user:<n> with a JSON user profile (~450 B): name,
	// email, city, tags, dates, a short bio.
	KindProfile = "profile"
	// KindLog is SET log:<n> with an access or application log line
	// (~300 B): timestamp, service, request ID, path, status, client IP,
	// user agent.
	KindLog = "log"
	// KindCounter is INCR of a page-view counter.
	KindCounter = "counter"
	// KindHash is HSET of a few fields of a session hash.
	KindHash = "hash"
)

// AllKinds lists the kinds of writes a Mix may weight.
var AllKinds = []string{KindProfile, KindLog, KindCounter, KindHash}

// MixPart is one kind of write and its weight in a Mix.
type MixPart struct {
	Kind   string `json:"kind"`
	Weight int    `json:"weight"`
}

// Mix is a weighted choice of kinds of writes.
type Mix []MixPart

// DefaultMix is the mix "arbor bench tree" writes unless told otherwise.
func DefaultMix() Mix {
	return Mix{{KindProfile, 40}, {KindLog, 30}, {KindCounter, 20}, {KindHash, 10}}
}

// ParseMix parses "profile=40,log=30,counter=20,hash=10"; kinds left out
// get weight 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, w, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return nil, fmt.Errorf("mix %q: want kind=weight", part)
		}
		if !slices.Contains(AllKinds, k) {
			return nil, fmt.Errorf("mix %q: unknown kind %q (want %s)", part, k, strings.Join(AllKinds, ", "))
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 || n > 1000000 {
			return nil, fmt.Errorf("mix %q: weight must be an integer from 0 to 1000000", part)
		}
		if slices.ContainsFunc(m, func(p MixPart) bool { return p.Kind == k }) {
			return nil, fmt.Errorf("mix: %q given twice", k)
		}
		m = append(m, MixPart{Kind: k, Weight: n})
	}
	return m, m.Validate()
}

// Validate checks that the mix weights something.
func (m Mix) Validate() error {
	total := 0
	for _, p := range m {
		if !slices.Contains(AllKinds, p.Kind) {
			return fmt.Errorf("mix: unknown kind %q", p.Kind)
		}
		if p.Weight < 0 {
			return fmt.Errorf("mix: %s has a negative weight", p.Kind)
		}
		total += p.Weight
	}
	if total == 0 {
		return errors.New("mix: at least one kind needs a positive weight")
	}
	return nil
}

// String renders the mix as ParseMix reads it.
func (m Mix) String() string {
	parts := make([]string, 0, len(m))
	for _, p := range m {
		parts = append(parts, p.Kind+"="+strconv.Itoa(p.Weight))
	}
	return strings.Join(parts, ",")
}

// docGen makes the commands of the realistic workload: JSON-like
// documents and text drawn from word lists with random numbers, IDs and
// timestamps, not random bytes, so they compress as real data does. It is
// deterministic for a seed and not safe for concurrent use.
type docGen struct {
	rng   *rand.Rand
	kinds []string // a kind per unit of weight
	// keyspace bounds the key numbers of each kind; in fill mode every
	// write makes a new key instead.
	keyspace int
	fill     bool
	seq      int       // writes so far, numbers fill mode's keys
	clock    time.Time // the workload's own clock, for timestamps
	val      []byte    // scratch value
	count    map[string]int64
	// dataBytes is the bytes of keys, fields and values written so far.
	dataBytes int64
}

// genEpoch is where the workload's clock starts.
var genEpoch = time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)

// newDocGen returns a generator of mix's writes over keyspace keys per
// kind, or of new keys only when fill is set.
func newDocGen(mix Mix, keyspace int, fill bool, seed uint64) *docGen {
	g := &docGen{
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		keyspace: max(1, keyspace),
		fill:     fill,
		clock:    genEpoch,
		count:    make(map[string]int64),
	}
	for _, p := range mix {
		for range p.Weight {
			g.kinds = append(g.kinds, p.Kind)
		}
	}
	// Large weights: keep the table small with the same proportions.
	if len(g.kinds) > 10000 {
		g.kinds = g.kinds[:0]
		total := 0
		for _, p := range mix {
			total += p.Weight
		}
		for _, p := range mix {
			for range p.Weight * 1000 / total {
				g.kinds = append(g.kinds, p.Kind)
			}
		}
	}
	return g
}

// WorkloadStream returns at least size bytes of the replication stream of
// the realistic workload: mix's commands over keyspace keys per kind, in
// RESP, the same for the same seed. Benchmarks of what carries the stream
// (compression, ingest) use it.
func WorkloadStream(mix Mix, keyspace int, seed uint64, size int) []byte {
	g := newDocGen(mix, keyspace, false, seed)
	b := make([]byte, 0, size+4<<10)
	for len(b) < size {
		b = g.appendNext(b)
	}
	return b
}

func (g *docGen) written() int64 { return g.dataBytes }

// key returns the number of the next key of a kind.
func (g *docGen) key() int {
	if g.fill {
		return g.seq
	}
	return g.rng.IntN(g.keyspace)
}

// appendNext appends the next command.
func (g *docGen) appendNext(b []byte) []byte {
	kind := g.kinds[g.rng.IntN(len(g.kinds))]
	g.seq++
	g.count[kind]++
	// The clock moves 0-2 ms per write: timestamps advance like a busy
	// service's.
	g.clock = g.clock.Add(time.Duration(g.rng.IntN(2000)) * time.Microsecond)
	switch kind {
	case KindProfile:
		n := g.key()
		g.val = g.profile(g.val[:0], n)
		return g.command(b, "SET", keyArg("user:", n), g.val)
	case KindLog:
		n := g.key()
		g.val = g.logLine(g.val[:0])
		return g.command(b, "SET", keyArg("log:", n), g.val)
	case KindCounter:
		page := pick(g.rng, pagePaths)
		k := fmt.Appendf(nil, "views:%s:%d", page, g.key())
		return g.command(b, "INCR", k)
	default: // KindHash
		n := g.key()
		ts := g.clock.AppendFormat(nil, time.RFC3339)
		return g.command(b, "HSET", keyArg("session:", n),
			[]byte("last_seen"), ts,
			[]byte("ip"), g.ip(nil),
			[]byte("page"), []byte(pick(g.rng, pagePaths)),
			[]byte("cart_items"), strconv.AppendInt(nil, int64(g.rng.IntN(12)), 10))
	}
}

func keyArg(prefix string, n int) []byte {
	return strconv.AppendInt([]byte(prefix), int64(n), 10)
}

// command appends a RESP command and counts its data bytes (every
// argument but the command name).
func (g *docGen) command(b []byte, name string, args ...[]byte) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(1+len(args)), 10)
	b = append(b, "\r\n$"...)
	b = strconv.AppendInt(b, int64(len(name)), 10)
	b = append(b, "\r\n"...)
	b = append(b, name...)
	b = append(b, "\r\n"...)
	for _, a := range args {
		g.dataBytes += int64(len(a))
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// profile appends a JSON user profile.
func (g *docGen) profile(b []byte, id int) []byte {
	r := g.rng
	first, last := pick(r, firstNames), pick(r, lastNames)
	num := r.IntN(100)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `,"uuid":"`...)
	b = g.uuid(b)
	b = append(b, `","username":"`...)
	b = appendLower(b, first[:1])
	b = appendLower(b, last)
	b = strconv.AppendInt(b, int64(num), 10)
	b = append(b, `","name":"`...)
	b = append(b, first...)
	b = append(b, ' ')
	b = append(b, last...)
	b = append(b, `","email":"`...)
	b = appendLower(b, first)
	b = append(b, '.')
	b = appendLower(b, last)
	b = strconv.AppendInt(b, int64(num), 10)
	b = append(b, '@')
	b = append(b, pick(r, emailDomains)...)
	b = append(b, `","age":`...)
	b = strconv.AppendInt(b, int64(18+r.IntN(60)), 10)
	c := cities[r.IntN(len(cities))]
	b = append(b, `,"address":{"city":"`...)
	b = append(b, c[0]...)
	b = append(b, `","country":"`...)
	b = append(b, c[1]...)
	b = append(b, `","zip":"`...)
	b = strconv.AppendInt(b, int64(10000+r.IntN(89999)), 10)
	b = append(b, `"},"plan":"`...)
	b = append(b, pick(r, plans)...)
	b = append(b, `","verified":`...)
	b = strconv.AppendBool(b, r.IntN(3) > 0)
	b = append(b, `,"tags":[`...)
	for i := range 1 + r.IntN(4) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, pick(r, tags)...)
		b = append(b, '"')
	}
	b = append(b, `],"followers":`...)
	b = strconv.AppendInt(b, int64(r.IntN(5000)), 10)
	b = append(b, `,"created_at":"`...)
	b = g.clock.Add(-time.Duration(r.IntN(3*365*24))*time.Hour).AppendFormat(b, time.RFC3339)
	b = append(b, `","last_login":"`...)
	b = g.clock.AppendFormat(b, time.RFC3339)
	b = append(b, `","bio":"`...)
	b = g.sentence(b, 8+r.IntN(16))
	b = append(b, `","prefs":{"lang":"`...)
	b = append(b, pick(r, langs)...)
	b = append(b, `","newsletter":`...)
	b = strconv.AppendBool(b, r.IntN(2) == 0)
	b = append(b, `,"theme":"`...)
	b = append(b, pick(r, themes)...)
	return append(b, `"}}`...)
}

// logLine appends an access log line, or now and then an application
// warning or error.
func (g *docGen) logLine(b []byte) []byte {
	r := g.rng
	b = g.clock.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	svc := pick(r, services)
	level := "INFO"
	switch x := r.IntN(100); {
	case x < 3:
		level = "ERROR"
	case x < 10:
		level = "WARN"
	}
	b = append(b, ' ')
	b = append(b, level...)
	b = append(b, ' ')
	b = append(b, svc...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(1000+r.IntN(9000)), 10)
	b = append(b, "]: request_id="...)
	b = g.hex(b, 16)
	b = append(b, " user_id="...)
	b = strconv.AppendInt(b, int64(r.IntN(1_000_000)), 10)
	if level != "INFO" {
		b = append(b, " msg=\""...)
		b = append(b, pick(r, logMessages)...)
		b = append(b, ": "...)
		b = g.sentence(b, 4+r.IntN(6))
		b = append(b, '"')
	}
	b = append(b, " method="...)
	b = append(b, pick(r, methods)...)
	b = append(b, " path=/api/v"...)
	b = strconv.AppendInt(b, int64(1+r.IntN(2)), 10)
	b = append(b, pick(r, pagePaths)...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
	b = append(b, " status="...)
	b = append(b, pick(r, statuses)...)
	b = append(b, " duration_ms="...)
	b = strconv.AppendFloat(b, float64(r.IntN(50000))/100, 'f', 2, 64)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, int64(200+r.IntN(20000)), 10)
	b = append(b, " client_ip="...)
	b = g.ip(b)
	b = append(b, " user_agent=\""...)
	b = append(b, pick(r, userAgents)...)
	return append(b, '"')
}

func (g *docGen) sentence(b []byte, words int) []byte {
	for i := range words {
		w := pick(g.rng, bioWords)
		if i == 0 {
			b = append(b, w[0]-'a'+'A')
			b = append(b, w[1:]...)
			continue
		}
		b = append(b, ' ')
		b = append(b, w...)
	}
	return append(b, '.')
}

func (g *docGen) ip(b []byte) []byte {
	r := g.rng
	for i, n := range []int{pickInt(r, 10, 172, 192, 81, 94), r.IntN(256), r.IntN(256), 1 + r.IntN(254)} {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return b
}

const hexDigits = "0123456789abcdef"

func (g *docGen) hex(b []byte, n int) []byte {
	for range n {
		b = append(b, hexDigits[g.rng.IntN(16)])
	}
	return b
}

func (g *docGen) uuid(b []byte) []byte {
	for i, n := range []int{8, 4, 4, 4, 12} {
		if i > 0 {
			b = append(b, '-')
		}
		b = g.hex(b, n)
	}
	return b
}

func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func pick(r *rand.Rand, list []string) string { return list[r.IntN(len(list))] }

func pickInt(r *rand.Rand, xs ...int) int { return xs[r.IntN(len(xs))] }

var (
	firstNames = strings.Fields(`James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth
		William Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy
		Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna
		Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald
		Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy Jacob Kathleen Gary Angela Nicholas
		Shirley Eric Brenda Jonathan Emma Stephen Anna Larry Pamela Justin Nicole Scott Samantha Brandon
		Katherine Benjamin Christine Samuel Helen Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet
		Raymond Maria Jack Olivia Dennis Heather Jerry Catherine Tyler Diane Aaron Julie Jose Victoria Adam
		Joyce Nathan Lauren Henry Kelly Zachary Christina Douglas Ruth Peter Joan Kyle Virginia Noah Judith
		Ethan Evelyn Jeremy Hannah Christian Andrea Walter Megan Keith Cheryl Austin Jacqueline Roger Madison
		Terry Teresa Sean Abigail Gerald Sophia Carl Martha Dylan Sara Harold Gloria Jordan Janice Jesse
		Kathryn Bryan Ann Lawrence Isabella Arthur Judy Gabriel Charlotte Bruce Julia Logan Grace Billy
		Amber Joe Alice Alan Jean Juan Denise Elijah Frances Willie Danielle Albert Marilyn Wayne Natalie
		Randy Beverly Mason Diana Vincent Brittany Liam Theresa Roy Kayla Bobby Alexis Caleb Doris Bradley
		Lori Russell Tiffany Lucas Yuki Hiroshi Mei Wei Priya Arjun Fatima Omar Lars Ingrid Pierre Chloe
		Luca Giulia Mateo Sofia Santiago Valentina Jakub Zofia Oleksandr Anastasia Kwame Amara Tariq Leila`)
	lastNames = strings.Fields(`Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
		Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White
		Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
		Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans
		Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez
		Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks
		Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long
		Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes
		Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace
		Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro
		Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman
		Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason
		Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills
		Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant
		Tanaka Suzuki Watanabe Yamamoto Wang Zhang Liu Sharma Gupta Singh Khan Ali Larsen Hansen Dubois
		Moreau Rossi Bianchi Kowalski Nowak Novak Horvat Petrov Ivanova Mensah Okafor Haddad Nasser`)
	emailDomains = strings.Fields(`gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me
		example.com fastmail.com gmx.de web.de orange.fr libero.it yandex.ru mail.com aol.com zoho.com`)
	cities = [][2]string{
		{"New York", "US"}, {"Los Angeles", "US"}, {"Chicago", "US"}, {"Houston", "US"}, {"Phoenix", "US"},
		{"Seattle", "US"}, {"Boston", "US"}, {"Austin", "US"}, {"Denver", "US"}, {"Toronto", "CA"},
		{"Vancouver", "CA"}, {"Montreal", "CA"}, {"London", "GB"}, {"Manchester", "GB"}, {"Edinburgh", "GB"},
		{"Paris", "FR"}, {"Lyon", "FR"}, {"Marseille", "FR"}, {"Berlin", "DE"}, {"Munich", "DE"},
		{"Hamburg", "DE"}, {"Madrid", "ES"}, {"Barcelona", "ES"}, {"Rome", "IT"}, {"Milan", "IT"},
		{"Amsterdam", "NL"}, {"Stockholm", "SE"}, {"Oslo", "NO"}, {"Copenhagen", "DK"}, {"Warsaw", "PL"},
		{"Prague", "CZ"}, {"Vienna", "AT"}, {"Zurich", "CH"}, {"Dublin", "IE"}, {"Lisbon", "PT"},
		{"Tokyo", "JP"}, {"Osaka", "JP"}, {"Seoul", "KR"}, {"Singapore", "SG"}, {"Sydney", "AU"},
		{"Melbourne", "AU"}, {"Mumbai", "IN"}, {"Bangalore", "IN"}, {"Sao Paulo", "BR"}, {"Mexico City", "MX"},
		{"Buenos Aires", "AR"}, {"Cape Town", "ZA"}, {"Lagos", "NG"}, {"Nairobi", "KE"}, {"Cairo", "EG"},
	}
	plans  = []string{"free", "free", "free", "pro", "pro", "team", "enterprise"}
	langs  = []string{"en", "en", "en", "fr", "de", "es", "it", "pt", "ja", "ko", "zh", "pl", "nl", "sv"}
	themes = []string{"light", "dark", "system"}
	tags   = strings.Fields(`hiking photography cooking travel music jazz rock football basketball tennis
		running cycling yoga gaming reading writing movies anime coffee tea wine gardening python golang
		rust javascript devops kubernetes design startups investing crypto science history art fashion
		fitness climbing skiing surfing chess podcasts cats dogs volunteering parenting diy cars`)
	bioWords = strings.Fields(`software engineer designer product manager based in love building
		things that people use every day previously at startup and big company enjoy coffee long walks
		with my dog open source contributor speaker writer mentor father mother of two curious about
		distributed systems data machine learning cloud infrastructure security mobile web apps teams
		leading small focused on growth customer experience marketing sales analytics research
		university student graduate teaching weekends mountains ocean city life books music photography
		travel food community volunteer runner cyclist amateur chef gardener learning languages always
		looking for new ideas opinions are my own views here helping companies scale reliable fast simple`)
	services = strings.Fields(`api-gateway auth-service user-service order-service payment-service
		catalog-service search-service cart-service notification-worker inventory-service shipping-service
		recommendation-api`)
	methods   = []string{"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH"}
	statuses  = []string{"200", "200", "200", "200", "200", "200", "201", "204", "301", "304", "400", "401", "403", "404", "429", "500", "502", "503"}
	pagePaths = strings.Fields(`/users /orders /products /cart /checkout /search /categories /reviews
		/wishlist /payments /shipments /notifications /sessions /recommendations /inventory /coupons`)
	logMessages = []string{
		"upstream timeout", "retrying request", "cache miss rate high", "slow query detected",
		"payment declined", "rate limit exceeded", "invalid token", "connection reset by peer",
		"circuit breaker open", "deprecated API version used", "validation failed", "queue backlog growing",
	}
	userAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"okhttp/4.12.0",
		"python-requests/2.31.0",
		"curl/8.5.0",
		"Go-http-client/2.0",
	}
)
