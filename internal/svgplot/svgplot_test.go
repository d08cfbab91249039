package svgplot

import (
	"encoding/xml"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// node is a parsed SVG element.
type node struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []node     `xml:",any"`
	Text     string     `xml:",chardata"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// all returns every element under n (n included) for which keep is true.
func (n node) all(keep func(node) bool) []node {
	var out []node
	if keep(n) {
		out = append(out, n)
	}
	for _, c := range n.Children {
		out = append(out, c.all(keep)...)
	}
	return out
}

func parse(t *testing.T, doc []byte) node {
	t.Helper()
	var root node
	if err := xml.Unmarshal(doc, &root); err != nil {
		t.Fatalf("not XML: %v\n%s", err, doc)
	}
	if root.XMLName.Local != "svg" || root.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Fatalf("root %v, want svg in the SVG namespace", root.XMLName)
	}
	return root
}

func class(c string) func(node) bool {
	return func(n node) bool { return n.attr("class") == c }
}

func texts(root node) []string {
	var out []string
	for _, n := range root.all(func(n node) bool { return n.XMLName.Local == "text" }) {
		out = append(out, n.Text)
	}
	return out
}

// points parses a path's d attribute into its points, with the index of
// each point's subpath.
func points(t *testing.T, d string) (xy [][2]float64, sub []int) {
	t.Helper()
	f := strings.Fields(d)
	s := -1
	for i := 0; i+1 < len(f); i += 2 {
		cmd, xs := f[i][:1], f[i][1:]
		if cmd == "M" {
			s++
		}
		x, err1 := strconv.ParseFloat(xs, 64)
		y, err2 := strconv.ParseFloat(f[i+1], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad path %q", d)
		}
		xy = append(xy, [2]float64{x, y})
		sub = append(sub, s)
	}
	return xy, sub
}

func TestLineChart(t *testing.T) {
	c := LineChart{
		Title: "lag <through> a failover", XLabel: "ms since kill", YLabel: "KiB",
		Series: []Series{
			{Name: "a", X: []float64{-100, 0, 100, 200}, Y: []float64{0, 50, 25, 0}},
			{Name: "b & c", X: []float64{-100, 0, 100, 200}, Y: []float64{10, math.NaN(), 30, 40}},
		},
		Markers: []Marker{{X: 0, Label: "kill"}},
	}
	doc, err := c.SVG()
	if err != nil {
		t.Fatal(err)
	}
	root := parse(t, doc)
	ts := texts(root)
	for _, want := range []string{"lag <through> a failover", "ms since kill", "KiB", "a", "b & c", "kill"} {
		if !slices.Contains(ts, want) {
			t.Errorf("no text %q in %q", want, ts)
		}
	}
	paths := root.all(class("series"))
	if len(paths) != 2 {
		t.Fatalf("%d series paths, want 2", len(paths))
	}
	frame := root.all(func(n node) bool { return n.XMLName.Local == "rect" && n.attr("stroke") == "#333" })[0]
	fx, _ := strconv.ParseFloat(frame.attr("x"), 64)
	fy, _ := strconv.ParseFloat(frame.attr("y"), 64)
	fw, _ := strconv.ParseFloat(frame.attr("width"), 64)
	fh, _ := strconv.ParseFloat(frame.attr("height"), 64)

	a, subA := points(t, paths[0].attr("d"))
	if len(a) != 4 || slices.Max(subA) != 0 {
		t.Fatalf("series a: %v (subpaths %v), want 4 points in one line", a, subA)
	}
	for _, p := range a {
		if p[0] < fx || p[0] > fx+fw || p[1] < fy || p[1] > fy+fh {
			t.Errorf("point %v outside the plot area %v,%v %vx%v", p, fx, fy, fw, fh)
		}
	}
	// X increases left to right; a higher Y is drawn higher (smaller y).
	if !(a[0][0] < a[1][0] && a[1][0] < a[2][0]) || !(a[1][1] < a[2][1] && a[2][1] < a[0][1]) {
		t.Errorf("series a drawn as %v", a)
	}
	// Equal data values sit at equal heights; the peak reaches at most the top.
	if a[0][1] != a[3][1] {
		t.Errorf("two zeros at different heights: %v", a)
	}
	b, subB := points(t, paths[1].attr("d"))
	if len(b) != 3 || !slices.Equal(subB, []int{0, 1, 1}) {
		t.Errorf("series b with a NaN: %v subpaths %v, want 3 points in 2 lines", b, subB)
	}
	if n := len(root.all(class("marker"))); n != 1 {
		t.Errorf("%d markers, want 1", n)
	}
}

func TestLineChartErrors(t *testing.T) {
	var de *DataError
	for _, c := range []struct {
		name  string
		chart LineChart
		want  func(error) bool
	}{
		{"no series", LineChart{}, func(err error) bool { return errors.Is(err, ErrNoData) }},
		{"only gaps", LineChart{Series: []Series{{Name: "s", X: []float64{1}, Y: []float64{math.NaN()}}}}, func(err error) bool { return errors.Is(err, ErrNoData) }},
		{"lengths", LineChart{Series: []Series{{Name: "s", X: []float64{1, 2}, Y: []float64{1}}}}, func(err error) bool { return errors.As(err, &de) && de.Series == "s" }},
		{"inf", LineChart{Series: []Series{{Name: "s", X: []float64{1}, Y: []float64{math.Inf(1)}}}}, func(err error) bool { return errors.As(err, &de) }},
	} {
		if _, err := c.chart.SVG(); !c.want(err) {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
}

func TestBarChart(t *testing.T) {
	c := BarChart{
		Title: "bytes", YLabel: "B per MiB",
		Groups: []string{"B", "C"},
		Series: []BarSeries{{Name: "native", Values: []float64{100, 200}}, {Name: "arbor", Values: []float64{25, math.NaN()}}},
		Format: func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) },
	}
	doc, err := c.SVG()
	if err != nil {
		t.Fatal(err)
	}
	root := parse(t, doc)
	bars := root.all(class("bar"))
	if len(bars) != 3 {
		t.Fatalf("%d bars, want 3 (a NaN draws none)", len(bars))
	}
	h := map[string]float64{}
	bottom := map[float64]bool{}
	for _, b := range bars {
		y, _ := strconv.ParseFloat(b.attr("y"), 64)
		hh, _ := strconv.ParseFloat(b.attr("height"), 64)
		h[b.attr("data-series")+"/"+b.attr("data-group")] = hh
		bottom[math.Round(y+hh)] = true
	}
	if len(bottom) != 1 {
		t.Errorf("bars do not share a baseline: %v", bottom)
	}
	// Heights are proportional to the values (the axis starts at 0).
	if r := h["native/C"] / h["native/B"]; math.Abs(r-2) > 0.02 {
		t.Errorf("native C/B height ratio %.3f, want 2", r)
	}
	if r := h["native/B"] / h["arbor/B"]; math.Abs(r-4) > 0.05 {
		t.Errorf("native/arbor height ratio in B %.3f, want 4", r)
	}
	ts := texts(root)
	for _, want := range []string{"100", "200", "25", "B", "C", "native", "arbor", "B per MiB"} {
		if !slices.Contains(ts, want) {
			t.Errorf("no text %q in %q", want, ts)
		}
	}
	var de *DataError
	if _, err := (&BarChart{Groups: []string{"x"}, Series: []BarSeries{{Name: "n", Values: []float64{-1}}}}).SVG(); !errors.As(err, &de) {
		t.Errorf("negative value: %v", err)
	}
	if _, err := (&BarChart{Groups: []string{"x", "y"}, Series: []BarSeries{{Name: "n", Values: []float64{1}}}}).SVG(); !errors.As(err, &de) {
		t.Errorf("too few values: %v", err)
	}
	if _, err := (&BarChart{}).SVG(); !errors.Is(err, ErrNoData) {
		t.Errorf("empty: %v", err)
	}
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 100, []float64{0, 20, 40, 60, 80, 100}},
		{0, 97, []float64{0, 20, 40, 60, 80, 100}},
		{-480, 1230, []float64{-500, 0, 500, 1000, 1500}},
		{0, 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0, 0, []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5}},
		{5, 5, []float64{2, 3, 4, 5, 6, 7, 8}},
	} {
		got := ticks(c.lo, c.hi, 6)
		if !slices.Equal(got, c.want) {
			t.Errorf("ticks(%v, %v) = %v, want %v", c.lo, c.hi, got, c.want)
		}
		if got[0] > c.lo || got[len(got)-1] < c.hi {
			t.Errorf("ticks(%v, %v) = %v do not cover the range", c.lo, c.hi, got)
		}
	}
	if got := tickLabel(0.25, []float64{0, 0.25, 0.5}); got != "0.25" {
		t.Errorf("tickLabel(0.25) = %q", got)
	}
	if got := tickLabel(1500, []float64{1000, 1500}); got != "1500" {
		t.Errorf("tickLabel(1500) = %q", got)
	}
}
