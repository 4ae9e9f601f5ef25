# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so it runs on distroless/static.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /p2psip ./server
# distroless has no shell to mkdir/chown at run time: make /data here, owned by
# nonroot (65532), so a fresh named volume is writable by the peer.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

# Run: no shell, no package manager, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /p2psip /p2psip
COPY --from=build --chown=65532:65532 /out/data /data
# The data dir keeps the node key and TLS certificate, so identity survives restarts.
VOLUME ["/data"]
# A fixed libp2p port (TCP+QUIC) so the EXPOSEd 4001 is the one the peer listens on.
ENV P2PSIP_DATA=/data P2PSIP_HTTPS=:8443 P2PSIP_P2P_PORT=4001
# HTTPS (softphone, WSS, API), SIP UDP/TCP, SIP TLS, libp2p TCP/QUIC, and the
# media bridge's RTP and ICE ports (--rtp-ports; publish them with
# `-p 20000-29999:20000-29999/udp`, or run with --network host).
EXPOSE 8443/tcp 5060/udp 5060/tcp 5061/tcp 4001/tcp 4001/udp 20000-29999/udp
USER nonroot
ENTRYPOINT ["/p2psip"]
