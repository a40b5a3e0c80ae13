# syntax=docker/dockerfile:1
# Untested here: no Docker engine runs on the development and CI machines.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o /out/concord ./cmd/concord

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/concord /usr/local/bin/concord
USER nonroot:nonroot
EXPOSE 8080 2575
ENTRYPOINT ["/usr/local/bin/concord"]
CMD ["serve"]
