{
  "graphiteHost": "127.0.0.1",
  "graphitePort": 2003,
  "port": 8125,
  "flushInterval": 10000,
  "percentThreshold": [90, 95, 99],
  "deleteIdleStats": false,
  "deleteGauges": true,
  "graphite": {
    "legacyNamespace": true
  },
  "servers": [
    { "server": "./servers/udp", "address": "0.0.0.0", "port": 8125 }
  ]
}
