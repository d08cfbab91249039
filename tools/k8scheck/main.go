// Command k8scheck decodes Kubernetes manifests strictly into the API's Go
// types (k8s.io/api, the types the API server itself decodes into): an
// unknown or misspelt field, a wrong type or an unknown kind fails. It runs
// offline, where schema validators that download JSON schemas cannot;
// it does not run the API server's value validation. cmd/arbor's deploy
// test runs it on deploy/k8s.
//
//	go -C tools run ./k8scheck FILE...
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	bad, n := 0, 0
	for _, path := range os.Args[1:] {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: document %d: %v\n", path, i, err)
				bad++
				break
			}
			if onlyComments(doc) {
				continue
			}
			_, gvk, err := dec.Decode(doc, nil, nil)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: document %d: %v\n", path, i, err)
				bad++
				continue
			}
			n++
			fmt.Printf("%s: %s\n", path, gvk.Kind)
		}
	}
	fmt.Printf("%d objects valid, %d invalid\n", n, bad)
	if bad > 0 {
		os.Exit(1)
	}
}

// onlyComments reports whether a YAML document holds no content.
func onlyComments(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}
