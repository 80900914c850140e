module vk-spdy/spdystream-client

go 1.22

require github.com/moby/spdystream v0.5.1
