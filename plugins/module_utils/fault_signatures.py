# Copyright: npufleet contributors
# Apache License 2.0
"""The catalogue of fault signatures: what a failed Ascend job prints, why, and the fix.

This file is data: Python literals only, so that the nodes' Python (3.8, maybe without PyYAML) reads
it where llm_launch watches a log, and the controller's diagnosis reads the same entries. Each entry:

- ``id``: a stable name, used in reports and ``npufleet diagnose --json``;
- ``patterns``: Python regexes; a log line matches the entry when any of them is found in it;
- ``cause`` and ``fix``: one sentence each, for the user;
- ``source``: the public place the message and its cause come from;
- ``symptom``: True when the line is usually the consequence of a failure elsewhere (a peer that
  timed out waiting); the diagnosis prefers a cause over a symptom when both are found;
- ``stops_launch``: True when llm_launch stops a run at once on the line (it would only hang or retry).

Order matters: a line is given to the first entry that matches it, so narrow entries come before
broad ones. Every entry is matched by a recorded line in tests/data/failure_logs/ (the unit tests
fail otherwise).
"""

from __future__ import annotations

PEER_LOST = "a peer rank went away or could not be reached"

_MANUAL = "the project's manual (shared/seed, SEED_SUMMARY.md)"
# MindCluster's fault knowledge graph: 1,051 entries of code, cause, fix and match strings.
_MC_KG = (
    "Ascend/mind-cluster component/ascend-faultdiag/src/ascend_fd/configuration/kg-config.json"
    " (https://github.com/Ascend/mind-cluster)"
)
# CANN's HCCL source (hcomm), where the message's format string is.
_HCOMM = "CANN HCCL source (hcomm) "
_PTA = "Ascend/pytorch (torch_npu) "

SIGNATURES = (
    # The manual's training and inference FAQ.
    {
        "id": "flash_attn_missing",
        "patterns": (r"not found in your environment: flash_attn", r"No module named 'flash_attn'"),
        "cause": "flash_attn is not available on Ascend",
        "fix": "the manual's training FAQ 3: do not ask for flash attention (flash_attn: disabled in"
        " LLaMA-Factory), or comment out the flash_attn check in transformers/dynamic_module_utils.py",
        "source": _MANUAL + ", training FAQ 3",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "elastic_exit_barrier_timeout",
        "patterns": (r"Error waiting on exit barrier",),
        "cause": "torch elastic's exit barrier timed out (300 s by default) while ranks finished",
        "fix": "the manual's training FAQ 4: raise barrier_timeout in torch/distributed/elastic/agent/"
        "server/api.py (_exit_barrier), or make the ranks finish together",
        "source": _MANUAL + ", training FAQ 4",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "vllm_max_model_len",
        "patterns": (r"User-specified max_model_len.*is greater than the d",),
        "cause": "max-model-len is longer than the model allows",
        "fix": "the manual's inference FAQ 2: lower --max-model-len (serve_max_model_len) to the model's"
        " max_position_embeddings or seq_length, or raise that in its config.json",
        "source": _MANUAL + ", inference FAQ 2",
        "symptom": False,
        "stops_launch": True,
    },
    # Memory on the NPU.
    {
        "id": "hccl_device_memory_exhausted",
        "patterns": (r"\bEI0011\b", r"Resource_Error_Insufficient_Device_Memory"),
        "cause": "HCCL could not allocate device memory for its buffers or queue pairs",
        "fix": "lower HCCL_BUFFSIZE or the batch size, or free the NPU's memory (npu-smi info lists who"
        " holds it)",
        "source": _HCOMM + "error_code.cc (EI0011); " + _MC_KG,
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "npu_out_of_memory",
        "patterns": (
            r"NPU out of memory",
            r"NPU memory",
            r"RuntimeError: .*out of memory",
            r"CUDA out of memory",
            r"\bEL0004\b.*Failed to allocate memory",
            r"\b207018\b.*memory on the device is exhausted",
        ),
        "cause": "the NPU ran out of memory",
        "fix": "lower the micro batch size or cutoff_len, use LoRA instead of full, or spread the model over"
        " more NPUs (TP/PP); for serving lower --gpu-memory-utilization",
        "source": _PTA + "NPUCachingAllocator.cpp and NPUErrorCodes.h; logs in"
        " https://github.com/hiyouga/LlamaFactory/issues/5491 and"
        " https://github.com/vllm-project/vllm-ascend/issues/4026",
        "symptom": False,
        "stops_launch": True,
    },
    # HCCL's own errors: the causes first, then the timeouts that follow them on the other ranks.
    {
        "id": "hccl_listen_port_in_use",
        "patterns": (r"listen on ip\[[^\]]*\] and specific port\[\d+\] fail", r"\bEJ0003\b"),
        "cause": "HCCL could not listen on its port: another process holds it",
        "fix": "stop the process on that port (npufleet check names it), or move HCCL's ports"
        " (HCCL_IF_BASE_PORT, HCCL_NPU_SOCKET_PORT_RANGE); the other ranks' socket timeouts follow",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/1955; " + _HCOMM + "hccl_socket.cc",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_tls_inconsistent",
        "patterns": (r"tlsStatus are inconsistent", r"for config \"tls\" is invalid"),
        "cause": "some NPUs of the job have TLS switched on and others off",
        "fix": "make the TLS switch the same on every NPU: 'hccn_tool -i N -tls -s enable 0' (npufleet check"
        " names the odd NPU)",
        "source": _MC_KG + " (AISW_CANN_HCCL_034); " + _HCOMM + "topoinfo_exchange_agent.cc (EI0016)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_rank_table_missing",
        "patterns": (
            r"\[HcomLoadRanktableFile\]get file\[.*\] real path error",
            r"\[Get\]\[RanktableRealPath\].*is not a valid real path",
        ),
        "cause": "the rank table file (RANK_TABLE_FILE) does not exist at the path given",
        "fix": "point RANK_TABLE_FILE at the rank table the gate wrote (<work dir>/npufleet/hccl.json),"
        " by its path inside the container",
        "source": _HCOMM + "param_check.cc and json_parser.cc; " + _MC_KG + " (AISW_CANN_HCCL_007)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_rank_table_invalid",
        "patterns": (
            r"to json fail\. please check json file",
            r"Failed to parse the ranktable file",
            r"The ranktable or rank is invalid",
        ),
        "cause": "the rank table file is not valid JSON, or its content fails HCCL's checks",
        "fix": "render it again (npufleet train writes <work dir>/npufleet/hccl.json), or fix it by hand:"
        " 'python3 -m json.tool' on it, status completed, unique rank_id, device_ip from /etc/hccn.conf",
        "source": _HCOMM + "topoinfo_ranktableParser.cc and error_code.cc (EI0004); " + _MC_KG,
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_rank_table_ip_mismatch",
        "patterns": (r"in the ranktable is inconsistent with the IP address of the network adapter",),
        "cause": "a device_ip in the rank table is not the address its NPU has",
        "fix": "build the rank table from the NPUs' addresses ('hccn_tool -i N -ip -g', /etc/hccn.conf):"
        " npufleet's gate writes it from what it read",
        "source": _HCOMM + "adapter_hccp.cc",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_rdma_init_failed",
        "patterns": (r"rdma init fail",),
        "cause": "HCCL could not bring up RDMA on an NPU's network port (a link down, or a wrong address)",
        "fix": "check the NPU's link, health and address ('hccn_tool -i N -link -g', '-net_health -g', '-ip"
        " -g'); npufleet check reads every NPU's",
        "source": _HCOMM + "adapter_hccp.cc; " + _MC_KG + " (AISW_CANN_HCCL_014)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_if_ip_not_in_nic_list",
        "patterns": (r"is not found in the nic list",),
        "cause": "HCCL_IF_IP names an address this node does not have",
        "fix": "set HCCL_IF_IP to one of this node's own addresses ('ip -4 addr'), or leave it unset",
        "source": _HCOMM + "sal.cc and bootstrap_ip.cc; " + _MC_KG + " (AISW_CANN_HCCL_001)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_socket_ifname_not_found",
        "patterns": (
            r"get host ip fail by socket Ifname",
            r"by HCCL_SOCKET_IFNAME, but not found in the environment",
        ),
        "cause": "HCCL_SOCKET_IFNAME names an interface this node does not have",
        "fix": "set HCCL_SOCKET_IFNAME (and GLOO_SOCKET_IFNAME) to the node's interface for the job's"
        " network ('ip -br link'), the same name on every node",
        "source": _HCOMM + "sal.cc; " + _MC_KG + " (AISW_CANN_HCCL_002)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "hccl_arguments_inconsistent",
        "patterns": (r"\bEI0005\b", r"arguments for collective communication are inconsistent between ranks"),
        "cause": "the ranks issued different collectives (operation, count, data type or buffer size)",
        "fix": "make every rank run the same sequence of collectives; HCCL_ENTRY_LOG_ENABLE=1 logs each one"
        " to compare",
        "source": _HCOMM + "error_code.cc (EI0005)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "roce_link_down_event",
        "patterns": (r"[Ee]vent[ _]id[=:]\s*\[?0x81078603",),
        "cause": "an NPU's RoCE link went down",
        "fix": "check the NPU's cable and switch port ('hccn_tool -i N -link_stat -g' shows its history;"
        " 'hccn_tool -i N -cfg recovery' tries to bring it back)",
        "source": _MC_KG + " (0x81078603)",
        "symptom": False,
        "stops_launch": False,
    },
    {
        "id": "hccl_cluster_exception",
        "patterns": (r"Cluster Exception Location",),
        "cause": "HCCL's cluster heartbeat found the rank that failed (its process exited, hung or lost"
        " its network) and names it in every rank's log",
        "fix": "go to the rank and address the line names (Cluster Exception Location[IP/ID]) and look at"
        " its own error",
        "source": "the HCCL user guide, troubleshooting 9.4.2 (CANN hcomm)",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_error_cqe",
        "patterns": (r"error cqe status", r"cqe err status", r"\bEI0013\b"),
        "cause": "RoCE packets were retransmitted past the limit: a lossy or flapping link, or a peer that"
        " died",
        "fix": "check the links' history ('hccn_tool -i N -link_stat -g') and the retry counters ('hccn_tool"
        " -i N -stat -g'); raise HCCL_RDMA_TIMEOUT only on a known slow network",
        "source": _HCOMM + "error_code.cc (EI0013); " + _MC_KG + " (AISW_CANN_HCCL_029)",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_socket_timeout",
        "patterns": (
            r"\bEI0006\b",
            r"Getting socket times out",
            r"topo exchange (?:agent|server) get socket timeout",
        ),
        "cause": "a rank waited for a peer's connection that never came: the peer failed or started late,"
        " or the link between them is down",
        "fix": "find the first error on the other nodes (it is the cause); check links, addresses and TLS"
        " with npufleet check; raise HCCL_CONNECT_TIMEOUT only when ranks start far apart",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/5461, /issues/9447 and /issues/486",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_link_establish_timeout",
        "patterns": (r"wait socket establish timeout", r"LinksEstablishCompleted\] is failed"),
        "cause": "HCCL's links between ranks were not established in time",
        "fix": "find the first error on the other nodes; check the NPU network with npufleet check",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/1955",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_notify_wait_timeout",
        "patterns": (r"\bEI0002\b", r"notify wait timeout", r"Notify register waits for execution"),
        "cause": "a collective's device-side wait timed out (HCCL_EXEC_TIMEOUT): a peer rank exited, hung"
        " or ran another operation",
        "fix": "find the rank that failed first (look for 'Cluster Exception Location' in the logs); raise"
        " HCCL_EXEC_TIMEOUT only for known long steps",
        "source": _HCOMM + "error_code.cc (EI0002); " + _MC_KG + " (AISW_CANN_ERRMSG_Custom_03)",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_watchdog_timeout",
        "patterns": (r"Watchdog caught collective operation timeout",),
        "cause": "a collective did not finish within the process group's timeout: a rank is stuck or gone",
        "fix": "find the rank that stopped first (its log has the cause); raise the timeout only for known"
        " long steps (HCCL_EXEC_TIMEOUT, the process group's timeout)",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/382; " + _PTA + "ProcessGroupHCCL.cpp",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "hccl_operation_error",
        "patterns": (r"OPS function error: Hccl\w+, error code is \d+", r"HCCL function error"),
        "cause": "an HCCL collective returned an error, usually after a peer stopped answering",
        "fix": "find the first error on the other nodes; HCCL's error code 6 is a socket timeout",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/486; " + _PTA + "HCCLUtils.hpp",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "torch_npu_hccl_call_failed",
        "patterns": (r"ERR02200 DIST call hccl api failed",),
        "cause": "a torch_npu distributed call got an error from HCCL; the code printed with it (EI...,"
        " EJ...) says which",
        "fix": "read the error code in the lines that follow it",
        "source": "https://github.com/hiyouga/LlamaFactory/issues/3839; " + _PTA + "NPUException.cpp",
        "symptom": True,
        "stops_launch": False,
    },
    # The NPUs, the driver and CANN in the container.
    {
        "id": "npu_device_busy_8005",
        "patterns": (r"dcmi module initialize failed\. ret is -8005",),
        "cause": "the NPU driver could not be opened from here: usually another container holds the devices",
        "fix": "find the container that holds the davinci devices ('npu-smi info' on the host lists its"
        " processes) and stop it, or give this job other NPUs",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/2698",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "npu_device_busy_8020",
        "patterns": (r"because the device is used\. ret is -8020",),
        "cause": "the NPU is in use by another process (dcmi -8020)",
        "fix": "stop the other process on the NPU ('npu-smi info' shows it), or choose other NPUs",
        "source": "https://github.com/Ascend/cann-container-image/issues/46",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "npu_held_by_last_job",
        "patterns": (r"Failed to initialize the HCCP process", r"\bEJ0001\b"),
        "cause": "the NPU is still held by an earlier training process",
        "fix": "stop the earlier job's processes ('npufleet down', or kill the pids 'npu-smi info' lists),"
        " wait 10 s, then start again",
        "source": "https://github.com/hiyouga/LlamaFactory/issues/3839; "
        + _MC_KG
        + " (AISW_PyTorch_Start_03)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "driver_not_mounted",
        "patterns": (r"libascend_hal\.so: cannot open shared object file",),
        "cause": "the container does not have the driver's libraries (the driver folders are not mounted)",
        "fix": "start the container with the driver mounts (npu_container does: /usr/local/Ascend/driver,"
        " /usr/local/dcmi, npu-smi) and LD_LIBRARY_PATH with the driver's lib64",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/1440",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "cann_libraries_missing",
        "patterns": (
            r"lib(?:hccl|ascendcl|runtime|ge_runner|acl_op_compiler)\.so: cannot open shared object",
            r"Please check that the (?:cann|runtime) package is installed",
        ),
        "cause": "CANN's libraries are not found: CANN is missing, or its environment is not set in the"
        " process that ran",
        "fix": "source CANN's set_env.sh (/usr/local/Ascend/ascend-toolkit/set_env.sh) in the shell that"
        " starts the job, or use an image with CANN",
        "source": _PTA + "torch_npu/_init/core/module_loader.py; " + _MC_KG + " (AISW_PyTorch_Env_01)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "cann_env_not_sourced",
        "patterns": (
            r"No module named 'tbe",
            r"EC0010: Failed to import Python module",
            r"'?ASCEND_(?:OPP|HOME)_PATH'? environment variable is not set",
        ),
        "cause": "CANN's environment is not set in the Python that ran (its tbe package, ASCEND_OPP_PATH)",
        "fix": "source /usr/local/Ascend/ascend-toolkit/set_env.sh before python (or in the launch script),"
        " with the Python CANN was installed for",
        "source": "https://github.com/hiyouga/LLaMA-Factory/issues/5638, https://github.com/Ascend/pytorch/"
        "issues/29; " + _PTA + "registry_manager.py",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "torch_npu_cann_skew",
        "patterns": (r"libtorch_npu\.so: undefined symbol",),
        "cause": "torch_npu was built for another torch or CANN than the one in the container",
        "fix": "install the torch and torch_npu pair built for this CANN (the Ascend/pytorch README's table;"
        " npufleet check compares the image's versions), or use the image the manual names",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/117, https://github.com/Ascend/pytorch/"
        "issues/35",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "torch_npu_cann_version_warning",
        "patterns": (
            r"do not match\. Please check the README of the Ascend PyTorch repo",
            r"PTA version mismatch",
        ),
        "cause": "torch_npu does not know this CANN version, or the ranks run different torch_npu builds",
        "fix": "use the same image on every node, with the CANN and torch_npu that the Ascend/pytorch"
        " README pairs",
        "source": _PTA + "registry_manager.py and ProcessGroupHCCL.cpp",
        "symptom": False,
        "stops_launch": False,
    },
    {
        "id": "torch_npu_backend_not_loaded",
        "patterns": (r"Failed to load the backend extension: torch_npu",),
        "cause": "torch could not load torch_npu (the line before says why: a driver library, a CANN"
        " library or a symbol)",
        "fix": "see the line before it; with the driver mounted and CANN sourced it loads",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/1440",
        "symptom": True,
        "stops_launch": True,
    },
    # Memory on the host, and /dev/shm.
    {
        "id": "shm_too_small",
        "patterns": (
            r"unable to (?:write to|allocate shared memory\(shm\) for) file </torch_",
            r"insufficient shared memory \(shm\)",
            r"Unexpected bus error encountered in worker",
        ),
        "cause": "/dev/shm in the container is too small for the data loader or the ranks' shared tensors",
        "fix": "give the container a larger shm (npu_container_shm_size, docker --shm-size), or fewer data"
        " loader workers",
        "source": "https://github.com/pangeo-data/pangeo-docker-images/issues/258,"
        " https://github.com/idiap/ESLAM/issues/20; pytorch aten/src/ATen/MapAllocator.cpp (torch 2.13's"
        " line, recorded in the lab)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "vllm_shm_broadcast_stall",
        "patterns": (r"No available shared memory broadcast block found in \d+ seconds?",),
        "cause": "vLLM's workers stopped taking broadcasts: a worker is stuck, busy or dead (or /dev/shm is"
        " too small)",
        "fix": "look for a worker's own error first; give the container a larger shm, or lower the load",
        "source": "https://github.com/vllm-project/vllm-ascend/issues/3717 and /issues/5087",
        "symptom": True,
        "stops_launch": False,
    },
    {
        "id": "host_out_of_memory",
        "patterns": (
            r"Out of memory: Kill(?:ed)? process",
            r"Memory cgroup out of memory",
            r"invoked oom-killer",
        ),
        "cause": "the host (or the container's memory limit) ran out of memory and the kernel killed a"
        " process",
        "fix": "lower the data loader's workers or preprocessing_num_workers, load the model in fewer"
        " processes (low_cpu_mem_usage), or give the container more memory",
        "source": "the Linux kernel's OOM killer (mm/oom_kill.c); " + _MC_KG + " (Comp_OS_Kernel_Mem_07/08)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "rank_killed",
        "patterns": (
            r"[Ss]ignal 9 \(SIGKILL\) received by PID",
            r"exitcode\s*:\s*-9\b",
            r"died with <Signals\.SIGKILL: 9>",
        ),
        "cause": "a rank was killed (SIGKILL): by the kernel's OOM killer, or by someone who stopped it",
        "fix": "look at dmesg on that node for the OOM killer ('dmesg -T | grep -i oom'); otherwise find who"
        " stopped the process",
        "source": "https://github.com/ZhehengJiangLancaster/AMVUR/issues/2 (torchrun's failure summary)",
        "symptom": False,
        "stops_launch": False,
    },
    {
        "id": "rank_stopped",
        "patterns": (
            r"Received 15 death signal, shutting down workers",
            r"SignalException: Process \d+ got signal: 15",
        ),
        "cause": "the rank was stopped (SIGTERM): by npufleet after another rank failed, or by a user",
        "fix": "look at the other nodes for the first failure; npufleet stops the survivors of a failed run",
        "source": "torch.distributed.elastic's agent (tests/data/failure_logs/lab/, recorded in the lab)",
        "symptom": True,
        "stops_launch": False,
    },
    # Ports taken at start, and the rendezvous.
    {
        "id": "serving_port_in_use",
        "patterns": (r"\[Errno 98\] (?:error while attempting to bind.*|Address already in use)",),
        "cause": "the serving port is already taken on the node",
        "fix": "another process listens on serve_port: stop it (another server, or 'npufleet teardown') or"
        " pick another serve_port",
        "source": "vLLM's own message (tests/data/vllm_cpu/startup-port.log)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "master_port_in_use",
        "patterns": (
            r"The server socket has failed to listen on any local network address",
            r"The server socket has failed to bind to .*Address already in use",
            r"\bEADDRINUSE\b",
        ),
        "cause": "MASTER_PORT is already taken on the master node: torch's rendezvous store cannot listen",
        "fix": "stop the process on that port ('npufleet check' names it), or choose another"
        " train_master_port",
        "source": "https://github.com/vllm-project/vllm/issues/39015, https://github.com/meta-pytorch/"
        "torchtune/issues/392",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "rendezvous_store_unreachable",
        # torch prints the same words as a warning while it retries: a launch is not stopped on them.
        "patterns": (
            r"TCP client failed to connect/validate to host",
            r"The client socket has timed out after \d+ms while trying to connect",
        ),
        "cause": "a rank could not reach the rendezvous store at MASTER_ADDR:MASTER_PORT: the master is not"
        " up (or failed), or the address or interface is wrong",
        "fix": "look at the master node's log first; check MASTER_ADDR and the firewall, and set"
        " GLOO_SOCKET_IFNAME/HCCL_SOCKET_IFNAME to the job's interface",
        "source": "https://github.com/verl-project/verl/issues/849; torch/csrc/distributed/c10d/TCPStore.cpp",
        "symptom": True,
        "stops_launch": False,
    },
    {
        "id": "store_barrier_timeout",
        "patterns": (r"Timed out initializing process group in store based barrier",),
        "cause": "not every rank joined the process group in time: a rank is missing, failed, or was started"
        " with another world size",
        "fix": "look for the rank that did not start; check that every node has the same nnodes and NPUs per"
        " node",
        "source": "https://github.com/tczhangzhi/pytorch-distributed/issues/18",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "peer_lost",
        "patterns": (
            r"Connection closed by peer",
            r"Connection reset by peer",
            r"RendezvousConnectionError|DistNetworkError|RendezvousTimeoutError",
            r"HCCL.*(?:timeout|time out)",
            r"ProcessGroupGloo.*timed out",
        ),
        "cause": PEER_LOST,
        "fix": "look at the other nodes' logs for the first failure; check MASTER_ADDR/MASTER_PORT, the"
        " interface in HCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME and the firewall between nodes",
        "source": "torch.distributed's rendezvous and gloo errors (https://github.com/pytorch/pytorch)",
        "symptom": True,
        "stops_launch": True,
    },
    {
        "id": "rank_failed",
        "patterns": (r"torch\.distributed\.elastic\.multiprocessing\.errors\.ChildFailedError",),
        "cause": "a rank exited with an error; torchrun's 'Root Cause' block and that rank's log say why",
        "fix": "read the exitcode and traceback under 'Root Cause (first observed failure)'",
        "source": "https://github.com/pytorch/pytorch/issues/134006",
        "symptom": True,
        "stops_launch": False,
    },
    {
        "id": "python_module_missing",
        "patterns": (r"ModuleNotFoundError: No module named '([^']+)'",),
        "cause": "a Python package is missing in the image",
        "fix": "install the pinned dependencies into the container (the manual's scripts/install.sh, or the"
        " train role's pip requirements) or use the image built for this framework",
        "source": _MANUAL + ", the install.sh step",
        "symptom": False,
        "stops_launch": True,
    },
    # vLLM's and MindIE's start-up failures (vLLM's as its OpenAI server prints them, tests/data/vllm_cpu/).
    {
        "id": "server_flag_rejected",
        "patterns": (r"error: unrecognized arguments: .*", r"error: argument --[\w-]+: .*"),
        "cause": "the server rejects a command-line flag",
        "fix": "remove or fix that flag: in serve_extra_args, or the serve_* variable that renders it (set it"
        " to 0 or empty to leave the flag out where this release of the server does not have it)",
        "source": "vLLM's argument parser (tests/data/vllm_cpu/startup-flag.log)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "vllm_kv_cache_too_small",
        "patterns": (
            r"less than requested memory for kv",
            r"No available memory for the cache blocks",
            r"larger than the available KV cache memory",
            r"KV cache memory is not enough",
        ),
        "cause": "the KV cache does not fit in memory",
        "fix": "ask for a smaller KV cache: VLLM_CPU_KVCACHE_SPACE (GiB) or --kv-cache-memory-bytes on the"
        " CPU, serve_gpu_memory_utilization on NPUs; or lower serve_max_model_len or serve_max_num_seqs",
        "source": "vLLM's engine (tests/data/vllm_cpu/startup-kv.log); " + _MC_KG + " (AISW_VLLM_ENGINE_001)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "vllm_cpu_head_size",
        "patterns": (r"Unsupported CPU attention configuration.*",),
        "cause": "vLLM's CPU attention does not support this model's head size",
        "fix": "serve a model whose hidden_size / num_attention_heads is 32, 64, 80, 96, 112, 128, 256 or"
        " 512",
        "source": "vLLM's CPU attention backend (tests/data/vllm_cpu/)",
        "symptom": False,
        "stops_launch": True,
    },
    {
        "id": "mindie_error_code",
        "patterns": (r"\bMIE\w{2}E\w{6}\b",),
        "cause": "a MindIE component reported an error code",
        "fix": "look the code up in MindIE's error code list (the MIE code's component and number);"
        " MIE04E120208 is shared memory, MIE04E120414 the master's heartbeat across nodes",
        "source": _MC_KG + " (AISW_MindIE_ERRCODE_Common)",
        "symptom": False,
        "stops_launch": False,
    },
)
