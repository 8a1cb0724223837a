# syntax=docker/dockerfile:1
# Multi-stage build: a static rcwatch binary in a minimal, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/rcwatch ./cmd/rcwatch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rcwatch /rcwatch
# The embedded default (`rcwatch run`) keeps its JetStream store here.
WORKDIR /data
USER 65532:65532
EXPOSE 9090 4222
ENTRYPOINT ["/rcwatch"]
CMD ["run", "--data-dir=/data"]
