// Package svgplot draws small line and bar charts as standalone SVG
// documents, for reports written into the repository (docs/benchmarks.md).
// It has no dependencies beyond the standard library and draws nothing
// the data does not give it: axes are scaled to the data, ticks are round
// numbers.
package svgplot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrNoData is returned for a chart with nothing to draw.
var ErrNoData = errors.New("svgplot: no data")

// DataError says what is wrong with a chart's data.
type DataError struct {
	Series string
	Reason string
}

func (e *DataError) Error() string {
	return fmt.Sprintf("svgplot: series %q: %s", e.Series, e.Reason)
}

// Default size of a chart, in SVG user units (pixels).
const (
	DefaultWidth  = 720
	DefaultHeight = 360
)

// margins around the plot area: room for the title, tick labels, axis
// labels and the legend.
const (
	marginLeft   = 72
	marginRight  = 16
	marginTop    = 36
	marginBottom = 48
	legendRow    = 16
	fontSize     = 12
)

// palette holds the series colours, in order (colour-blind friendly:
// Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// Color returns the colour of the i-th series.
func Color(i int) string { return palette[i%len(palette)] }

// Series is one line of a LineChart: points (X[i], Y[i]). A NaN Y leaves a
// gap (no value there).
type Series struct {
	Name string
	X, Y []float64
}

// Marker is a vertical line across a LineChart at X, labelled.
type Marker struct {
	X     float64
	Label string
}

// LineChart is a chart of one or more series over a shared X axis.
type LineChart struct {
	Title, XLabel, YLabel string
	Series                []Series
	Markers               []Marker
	// Width and Height default to DefaultWidth and DefaultHeight.
	Width, Height int
	// YMin0 starts the Y axis at 0 whatever the data.
	YMin0 bool
}

// BarSeries is one series of a BarChart: a value per group (NaN: none).
type BarSeries struct {
	Name   string
	Values []float64
}

// BarChart is a grouped bar chart: for each group, one bar per series.
// Its Y axis starts at 0; values must not be negative.
type BarChart struct {
	Title, YLabel string
	Groups        []string
	Series        []BarSeries
	// Width and Height default to DefaultWidth and DefaultHeight.
	Width, Height int
	// Format formats the value printed above each bar (nil: %.3g).
	Format func(float64) string
}

// frame is the plot area of a chart and its scales.
type frame struct {
	w, h                   float64
	left, right, top, bot  float64 // plot area
	xmin, xmax, ymin, ymax float64
}

func (f *frame) x(v float64) float64 {
	if f.xmax == f.xmin {
		return (f.left + f.right) / 2
	}
	return f.left + (v-f.xmin)/(f.xmax-f.xmin)*(f.right-f.left)
}

func (f *frame) y(v float64) float64 {
	if f.ymax == f.ymin {
		return (f.top + f.bot) / 2
	}
	return f.bot - (v-f.ymin)/(f.ymax-f.ymin)*(f.bot-f.top)
}

// SVG renders the chart.
func (c *LineChart) SVG() ([]byte, error) {
	if len(c.Series) == 0 {
		return nil, ErrNoData
	}
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		if len(s.X) != len(s.Y) {
			return nil, &DataError{s.Name, fmt.Sprintf("%d x values, %d y values", len(s.X), len(s.Y))}
		}
		for i, x := range s.X {
			y := s.Y[i]
			if math.IsNaN(x) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				return nil, &DataError{s.Name, fmt.Sprintf("point %d is not finite", i)}
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			if !math.IsNaN(y) {
				ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
			}
		}
	}
	if math.IsInf(xmin, 1) || math.IsInf(ymin, 1) {
		return nil, ErrNoData
	}
	for _, m := range c.Markers {
		xmin, xmax = math.Min(xmin, m.X), math.Max(xmax, m.X)
	}
	if c.YMin0 {
		ymin = math.Min(ymin, 0)
	}
	xt := ticks(xmin, xmax, 8)
	yt := ticks(ymin, ymax, 6)
	names := make([]string, len(c.Series))
	for i, s := range c.Series {
		names[i] = s.Name
	}
	f := newFrame(c.Width, c.Height, names)
	f.xmin, f.xmax = xt[0], xt[len(xt)-1]
	f.ymin, f.ymax = yt[0], yt[len(yt)-1]

	var b bytes.Buffer
	open(&b, f, c.Title)
	axes(&b, f, xt, yt, c.XLabel, c.YLabel)
	for _, m := range c.Markers {
		x := f.x(m.X)
		fmt.Fprintf(&b, `<line class="marker" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#555" stroke-dasharray="4 3"/>`+"\n",
			num(x), num(f.top), num(x), num(f.bot))
		text(&b, x+3, f.top+fontSize, "start", m.Label, "")
	}
	for i, s := range c.Series {
		// One path per run of points without a gap.
		var d strings.Builder
		pen := false
		for j := range s.X {
			if math.IsNaN(s.Y[j]) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s ", cmd, num(f.x(s.X[j])), num(f.y(s.Y[j])))
			pen = true
		}
		fmt.Fprintf(&b, `<path class="series" data-series="%s" d="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n",
			attr(s.Name), strings.TrimSpace(d.String()), Color(i))
	}
	legend(&b, f, names)
	b.WriteString("</svg>\n")
	return b.Bytes(), nil
}

// SVG renders the chart.
func (c *BarChart) SVG() ([]byte, error) {
	if len(c.Groups) == 0 || len(c.Series) == 0 {
		return nil, ErrNoData
	}
	ymax := 0.0
	some := false
	for _, s := range c.Series {
		if len(s.Values) != len(c.Groups) {
			return nil, &DataError{s.Name, fmt.Sprintf("%d values for %d groups", len(s.Values), len(c.Groups))}
		}
		for i, v := range s.Values {
			if math.IsNaN(v) {
				continue
			}
			if math.IsInf(v, 0) || v < 0 {
				return nil, &DataError{s.Name, fmt.Sprintf("value %d (%v) is not a finite non-negative number", i, v)}
			}
			ymax = math.Max(ymax, v)
			some = true
		}
	}
	if !some {
		return nil, ErrNoData
	}
	format := c.Format
	if format == nil {
		format = func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }
	}
	yt := ticks(0, ymax, 6)
	names := make([]string, len(c.Series))
	for i, s := range c.Series {
		names[i] = s.Name
	}
	f := newFrame(c.Width, c.Height, names)
	f.ymin, f.ymax = yt[0], yt[len(yt)-1]

	var b bytes.Buffer
	open(&b, f, c.Title)
	axes(&b, f, nil, yt, "", c.YLabel)
	groupW := (f.right - f.left) / float64(len(c.Groups))
	barW := groupW * 0.8 / float64(len(c.Series))
	for g, name := range c.Groups {
		gx := f.left + float64(g)*groupW
		text(&b, gx+groupW/2, f.bot+fontSize+6, "middle", name, "")
		for i, s := range c.Series {
			v := s.Values[g]
			if math.IsNaN(v) {
				continue
			}
			x := gx + groupW*0.1 + float64(i)*barW
			y := f.y(v)
			fmt.Fprintf(&b, `<rect class="bar" data-series="%s" data-group="%s" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`+"\n",
				attr(s.Name), attr(name), num(x), num(y), num(barW), num(f.bot-y), Color(i), esc(s.Name+" "+name+": "+format(v)))
			text(&b, x+barW/2, y-3, "middle", format(v), "value")
		}
	}
	legend(&b, f, names)
	b.WriteString("</svg>\n")
	return b.Bytes(), nil
}

func newFrame(w, h int, names []string) *frame {
	if w <= 0 {
		w = DefaultWidth
	}
	if h <= 0 {
		h = DefaultHeight
	}
	f := &frame{w: float64(w), h: float64(h)}
	f.left, f.right = marginLeft, f.w-marginRight
	f.top = marginTop
	f.bot = f.h - marginBottom - float64(legendRows(f, names))*legendRow
	return f
}

// legendCols returns how many legend entries fit side by side (at most
// 4), judged by the longest name at about 0.6 em per character.
func legendCols(f *frame, names []string) int {
	longest := 0
	for _, n := range names {
		longest = max(longest, len([]rune(n)))
	}
	w := 14 + 0.6*fontSize*float64(longest) + 12
	return max(1, min(4, int((f.right-f.left)/w)))
}

func legendRows(f *frame, names []string) int {
	c := legendCols(f, names)
	return (len(names) + c - 1) / c
}

func open(b *bytes.Buffer, f *frame, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="sans-serif" font-size="%d">`+"\n",
		num(f.w), num(f.h), num(f.w), num(f.h), fontSize)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	text(b, f.w/2, 20, "middle", title, "title")
}

// axes draws the frame, grid lines and tick labels (xt nil: no X ticks,
// a bar chart's groups label it) and the axis labels.
func axes(b *bytes.Buffer, f *frame, xt, yt []float64, xlabel, ylabel string) {
	for _, v := range yt {
		y := f.y(v)
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`+"\n", num(f.left), num(y), num(f.right), num(y))
		text(b, f.left-6, y+4, "end", tickLabel(v, yt), "")
	}
	for _, v := range xt {
		x := f.x(v)
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee"/>`+"\n", num(x), num(f.top), num(x), num(f.bot))
		text(b, x, f.bot+fontSize+6, "middle", tickLabel(v, xt), "")
	}
	fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333"/>`+"\n",
		num(f.left), num(f.top), num(f.right-f.left), num(f.bot-f.top))
	if xlabel != "" {
		text(b, (f.left+f.right)/2, f.bot+2*fontSize+12, "middle", xlabel, "")
	}
	if ylabel != "" {
		cy := (f.top + f.bot) / 2
		fmt.Fprintf(b, `<text x="16" y="%s" text-anchor="middle" transform="rotate(-90 16 %s)">%s</text>`+"\n", num(cy), num(cy), esc(ylabel))
	}
}

func legend(b *bytes.Buffer, f *frame, names []string) {
	cols := legendCols(f, names)
	colW := (f.right - f.left) / float64(cols)
	for i, name := range names {
		x := f.left + float64(i%cols)*colW
		y := f.bot + marginBottom + float64(i/cols)*legendRow
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="10" height="10" fill="%s"/>`+"\n", num(x), num(y-9), Color(i))
		text(b, x+14, y, "start", name, "legend")
	}
}

func text(b *bytes.Buffer, x, y float64, anchor, s, class string) {
	if s == "" {
		return
	}
	cl := ""
	if class != "" {
		cl = ` class="` + class + `"`
	}
	fmt.Fprintf(b, `<text%s x="%s" y="%s" text-anchor="%s">%s</text>`+"\n", cl, num(x), num(y), anchor, esc(s))
}

// ticks returns round tick values covering [lo, hi], about n of them;
// the first is <= lo and the last >= hi.
func ticks(lo, hi float64, n int) []float64 {
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		// One value: a range around it.
		d := math.Abs(lo)
		if d == 0 {
			d = 1
		}
		lo, hi = lo-d/2, hi+d/2
		if lo < 0 && lo+d/2 >= 0 {
			lo = 0
		}
	}
	step := niceStep((hi - lo) / float64(max(n-1, 1)))
	first := math.Floor(lo/step) * step
	last := math.Ceil(hi/step) * step
	var out []float64
	for i := 0; ; i++ {
		v := first + float64(i)*step
		// Round away the float error of the multiplication (0.6, not
		// 0.6000000000000001).
		v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
		out = append(out, v)
		if v >= last-step/1e9 {
			break
		}
	}
	return out
}

// niceStep returns 1, 2, 2.5 or 5 times a power of ten, at least raw.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel formats v with as many decimals as the ticks' step needs.
func tickLabel(v float64, ts []float64) string {
	if len(ts) < 2 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	step := ts[1] - ts[0]
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
		if s := step * math.Pow(10, float64(dec)); math.Abs(s-math.Round(s)) > 1e-6 {
			dec++ // 2.5 × 10^-n
		}
	}
	if math.Abs(v) < step/1e6 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// num formats a coordinate.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func attr(s string) string { return esc(s) }
