// swift-tools-version:6.0
import PackageDescription

// Hot numeric code is optimized even in debug builds: the test suite runs the real model, and an
// unoptimized forward pass is ~50x slower. Only the root package may use unsafe flags, which we are.
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "Baton",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "baton", targets: ["baton"]),
        // Tests only: an emulated libibverbs provider that the RDMA tests load in place of the real one
        // (BATON_IBVERBS_LIBRARY). A dynamic library so that `swift build --build-tests` builds it next to
        // the test bundle and the baton executable, with no compiler needed at test time.
        .library(name: "BatonFakeVerbs", type: .dynamic, targets: ["FakeVerbs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System-library shims: nothing else in C targets.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(
            name: "CKernels",
            path: "Sources/CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(name: "CIBVerbs", path: "Sources/CIBVerbs", linkerSettings: [.linkedLibrary("dl")]),
        // The emulated verbs provider (tests only, see the product above): no Swift target depends on it.
        .target(name: "FakeVerbs", path: "Tests/FakeVerbs"),

        // Model files: GGUF, tokenizer, chat templates.
        .target(name: "GGUF", swiftSettings: optimized),
        .target(name: "Tokenization", dependencies: ["GGUF"], swiftSettings: optimized),
        // A small Jinja interpreter for GGUF chat templates: typed messages in, text out.
        .target(name: "ChatTemplates", swiftSettings: optimized),

        // The contract of a generation, shared by everything that starts, runs, carries or renders one: requests,
        // the resumable state, sampling parameters, events, finish reasons, the backend protocol. No dependencies.
        .target(name: "Generation"),

        // Pure inference core: engines, KV cache, sampling and the one decode loop. Knows nothing of networking.
        .target(
            name: "Inference",
            dependencies: ["GGUF", "Tokenization", "ChatTemplates", "CKernels", "CBLAS", "Generation"],
            swiftSettings: optimized
        ),

        // Wire contract shared by processes (generated protobuf code lives in Generated/) and its conversions.
        .target(
            name: "ClusterProtocol",
            dependencies: ["Generation", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),

        // Node-to-node RPC: the mutual-TLS HTTP/2 listener and client every process uses, and certificates.
        .target(
            name: "RPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // KV hand-off transports (TLS HTTP/2 over RPC's listener, shared memory, RDMA).
        .target(
            name: "KVTransport",
            dependencies: [
                "ClusterProtocol", "CIBVerbs", "CKernels", "RPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: optimized
        ),

        // Device profiles, config-file placement policy, membership log: pure bookkeeping, no networking.
        .target(
            name: "Placement",
            dependencies: ["CKernels", "Generation", .product(name: "Yams", package: "Yams")],
            swiftSettings: optimized
        ),

        // The cluster's control plane: the placement service and its clients (workers' registration and
        // heartbeats, the router's choice of a prefill/decode pair), and the router's backend that splits
        // each generation between two workers. Knows neither the inference core nor the router.
        .target(
            name: "Cluster",
            dependencies: [
                "Placement", "RPC", "ClusterProtocol", "Generation",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Prefill and decode workers: glue the inference core to the RPC layer and the KV transports.
        .target(
            name: "Worker",
            dependencies: [
                "Inference", "KVTransport", "RPC", "ClusterProtocol", "GGUF", "Tokenization", "Cluster", "Placement",
                "Generation", "CBLAS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: optimized
        ),

        // OpenAI-compatible HTTP API: tokenizes and templates, then hands token ids to a GenerationBackend.
        .target(
            name: "Router",
            dependencies: [
                "GGUF", "Tokenization", "ChatTemplates", "Generation", "RPC",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The page served at `/`, compiled into the binary (no files to install beside it).
            resources: [.embedInCode("Page/index.html"), .embedInCode("Page/app.js"), .embedInCode("Page/style.css")]
        ),

        // Benchmark clients and drivers: the serving load generator and the TTFT comparison of the two paths.
        .target(
            name: "Benchmarks",
            dependencies: [
                "Worker", "Inference", "KVTransport", "RPC", "Generation", "Tokenization", "Placement",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The cluster simulator's event loop runs 100 000s of placements: optimized even in debug builds.
            swiftSettings: optimized
        ),

        .executableTarget(
            name: "baton",
            dependencies: [
                "GGUF", "Tokenization", "ChatTemplates", "Inference", "KVTransport", "RPC", "ClusterProtocol",
                "Placement", "Router", "Worker", "Cluster", "Generation", "Benchmarks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization", "GGUF"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ChatTemplatesTests", dependencies: ["ChatTemplates"], resources: [.copy("Fixtures")]),
        .testTarget(name: "GenerationTests", dependencies: ["Generation"]),
        .testTarget(
            name: "InferenceTests", dependencies: ["Inference", "Generation", "GGUF", "Tokenization", "CKernels"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "PlacementTests", dependencies: ["Placement", "Generation"]),
        .testTarget(name: "BenchmarksTests", dependencies: ["Benchmarks"]),
        .testTarget(
            name: "RouterTests",
            dependencies: ["Router", "Generation", .product(name: "HummingbirdTesting", package: "hummingbird")]
        ),
        .testTarget(
            name: "WorkerTests",
            dependencies: [
                "Worker", "Inference", "KVTransport", "RPC", "ClusterProtocol", "GGUF", "Generation", "Placement",
                "Tokenization",
            ]),
        // Real processes: spawns the built `baton` executable.
        .testTarget(name: "IntegrationTests", dependencies: ["KVTransport", "RPC", "ClusterProtocol"], exclude: ["Scripts"]),
        .testTarget(
            name: "RPCTests",
            dependencies: [
                "RPC", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"), .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .testTarget(
            name: "KVTransportTests",
            dependencies: ["KVTransport", "RPC", "ClusterProtocol", .product(name: "Logging", package: "swift-log")]
        ),
        // Deploy/ artefacts checked with real validators (systemd-analyze, check-jsonschema, kubernetes-validate).
        .testTarget(name: "DeployTests"),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Cluster", "Placement", "RPC", "ClusterProtocol", "Generation",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
