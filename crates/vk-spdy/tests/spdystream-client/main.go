// Command spdystream-client drives a vk-spdy server the way the apiserver
// does: through github.com/moby/spdystream, the SPDY library client-go uses
// for exec, attach and port-forward. It is run by tests/go_interop.rs.
//
// Usage: spdystream-client HOST:PORT
//
// It exits 0 and prints OK when every scenario behaved as expected.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

const size = 10 * 1024 * 1024

func main() {
	if len(os.Args) != 2 {
		fail("usage: spdystream-client HOST:PORT")
	}
	time.AfterFunc(2*time.Minute, func() { fail("timed out") })

	netConn, err := net.Dial("tcp", os.Args[1])
	check(err, "dial")
	conn, err := spdystream.NewConnection(netConn, false)
	check(err, "new connection")
	go conn.Serve(spdystream.NoOpStreamHandler)

	pings(conn)
	portForward(conn)
	reset(conn)
	exec(conn)
	fmt.Println("OK")
}

// open creates a stream and waits for the server's SYN_REPLY, as
// k8s.io/apimachinery's connection.CreateStream does.
func open(conn *spdystream.Connection, streamType string, extra ...string) *spdystream.Stream {
	headers := http.Header{}
	headers.Set("streamType", streamType)
	for i := 0; i+1 < len(extra); i += 2 {
		headers.Set(extra[i], extra[i+1])
	}
	stream, err := conn.CreateStream(headers, nil, false)
	check(err, "create "+streamType)
	check(stream.WaitTimeout(10*time.Second), "SYN_REPLY for "+streamType)
	return stream
}

// pings: the client's pings (odd ids) are answered.
func pings(conn *spdystream.Connection) {
	for i := 0; i < 3; i++ {
		if _, err := conn.Ping(); err != nil {
			fail("ping: %v", err)
		}
	}
}

// portForward: a bidirectional data stream, echoed by the server. The
// payload goes out in one Write, hence one 4 MiB data frame, as when Go code
// copies an in-memory reader into a stream.
func portForward(conn *spdystream.Connection) {
	data := open(conn, "data", "port", "8080", "requestID", "0")
	payload := pattern(4*1024*1024, 3)
	go func() {
		_, err := data.Write(payload)
		check(err, "port-forward write")
		check(data.Close(), "port-forward close")
	}()
	echoed, err := io.ReadAll(data)
	check(err, "port-forward read")
	if !bytes.Equal(echoed, payload) {
		fail("port-forward echo differs: %d bytes back, %d sent", len(echoed), len(payload))
	}
}

// reset: the server resets the stream; reads end.
func reset(conn *spdystream.Connection) {
	stream := open(conn, "reset-me")
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(stream)
		done <- err
	}()
	select {
	case err := <-done:
		check(err, "read after reset")
	case <-time.After(10 * time.Second):
		fail("reading a reset stream did not end")
	}
}

// exec: error, stdin and stdout streams; 10 MB through stdin echoed on
// stdout, a status on the error stream, then the server closes the session.
func exec(conn *spdystream.Connection) {
	errorStream := open(conn, "error")
	stdin := open(conn, "stdin")
	stdout := open(conn, "stdout")

	payload := pattern(size, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for chunk := payload; len(chunk) > 0; {
			n := 32 * 1024
			if n > len(chunk) {
				n = len(chunk)
			}
			_, err := stdin.Write(chunk[:n])
			check(err, "stdin write")
			chunk = chunk[n:]
		}
		check(stdin.Close(), "stdin close")
	}()
	echoed, err := io.ReadAll(stdout)
	check(err, "stdout read")
	wg.Wait()
	if !bytes.Equal(echoed, payload) {
		fail("stdout differs: %d bytes back, %d sent", len(echoed), len(payload))
	}
	status, err := io.ReadAll(errorStream)
	check(err, "error stream read")
	if string(status) != `{"status":"Success"}` {
		fail("unexpected status %q", status)
	}
	select {
	case <-conn.CloseChan():
	case <-time.After(10 * time.Second):
		fail("the server's GOAWAY did not end the connection")
	}
}

func pattern(n int, seed uint32) []byte {
	x := seed*2654435761 | 1
	out := make([]byte, n)
	for i := range out {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		out[i] = byte(x)
	}
	return out
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}
