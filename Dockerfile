# gdprgate's image for those who build with Docker:
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/gdprgate/gdprgate .
# `make image` builds the same image without a Docker daemon
# (cmd/gdprgate-image, internal/ociimage); internal/ociimage's tests check that
# this file declares what that image contains: scratch, the static binary,
# CA certificates, the non-root user 65532, the same environment, labels,
# ports, entrypoint and command.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/gdprgate/gdprgate/internal/version.Version=${VERSION}" \
      -o /out/gdprgate ./cmd/gdprgate
RUN mkdir -p /out/etc /out/home/nonroot /out/tmp \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group \
 && chmod 0700 /out/home/nonroot && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=dev
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc/passwd /etc/passwd
COPY --from=build /out/etc/group /etc/group
COPY --from=build --chown=65532:65532 /out/home/nonroot /home/nonroot
COPY --from=build /out/tmp /tmp
COPY --from=build /out/gdprgate /gdprgate
ENV PATH=/ \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/nonroot \
    GDPRGATE_GRPC_ADDR=0.0.0.0:9191 \
    GDPRGATE_ADMIN_ADDR=0.0.0.0:9192 \
    GDPRGATE_LISTEN=0.0.0.0:8080
LABEL org.opencontainers.image.title="gdprgate" \
      org.opencontainers.image.description="Makes an HTTP/JSON API obey GDPR visibility rules: Envoy ext_authz and ext_proc, a reverse proxy, an admin API" \
      org.opencontainers.image.source="https://github.com/gdprgate/gdprgate" \
      org.opencontainers.image.version="${VERSION}"
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080/tcp 9191/tcp 9192/tcp
ENTRYPOINT ["/gdprgate"]
CMD ["serve"]
