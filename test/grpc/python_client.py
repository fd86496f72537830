"""A gRPC client that is not torchd's: Debian's python3-grpcio over stubs that protoc generated from
torchd's proto/ files (the test does that in a temp folder and puts it first on sys.path). It runs
TorchServe's documented client flow (ts_scripts/torchserve_grpc_client.py: infer with {"data": bytes}
and its metadata, ListModels, RegisterModel, UnregisterModel), a StreamPredictions2 exchange and a
KServe v2 raw ModelInfer, and prints one JSON object with what it saw.

usage: python_client.py INFERENCE_ADDR MANAGEMENT_ADDR DIGIT_PNG MAR_TO_REGISTER
"""
import json
import struct
import sys

import grpc
from google.protobuf import empty_pb2

import inference_pb2
import inference_pb2_grpc
import management_pb2
import management_pb2_grpc
from kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc


def main():
    inference_addr, management_addr, digit_png, mar = sys.argv[1:5]
    out = {}
    with grpc.insecure_channel(inference_addr) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        out["ping"] = stub.Ping(empty_pb2.Empty()).health
        with open(digit_png, "rb") as f:
            data = f.read()
        metadata = (("protocol", "gRPC"), ("session_id", "12345"))
        response = stub.Predictions(inference_pb2.PredictionsRequest(model_name="mnist", input={"data": data}), metadata=metadata)
        out["prediction"] = response.prediction.decode("utf-8")
        try:
            stub.Predictions(inference_pb2.PredictionsRequest(model_name="nope", input={"data": data}))
        except grpc.RpcError as e:
            out["unknown_model"] = {"code": e.code().name, "details": json.loads(e.details())}

        # StreamPredictions2: a good image, a bad one, a good one; answered in order, the bad one with status.
        requests = [
            inference_pb2.PredictionsRequest(model_name="mnist", input={"data": data}, sequence_id="s1"),
            inference_pb2.PredictionsRequest(model_name="mnist", input={"data": b"not an image"}, sequence_id="s2"),
            inference_pb2.PredictionsRequest(model_name="mnist", input={"data": data}, sequence_id="s3"),
        ]
        out["stream"] = [
            {
                "sequence_id": r.sequence_id,
                "prediction": r.prediction.decode("utf-8"),
                "code": r.status.code if r.HasField("status") else None,
            }
            for r in stub.StreamPredictions2(iter(requests))
        ]

        v2 = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        x = [1.0, 2.0, 3.0]
        y = [10.0, 20.0, 30.0]
        request = grpc_predict_v2_pb2.ModelInferRequest(model_name="adder", id="py-1")
        for name in ("x", "y"):
            t = request.inputs.add()
            t.name = name
            t.datatype = "FP32"
            t.shape.extend([1, 3])
        request.raw_input_contents.extend([struct.pack("<3f", *x), struct.pack("<3f", *y)])
        answer = v2.ModelInfer(request)
        out["v2"] = {
            "id": answer.id,
            "model_name": answer.model_name,
            "outputs": [
                {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in answer.outputs
            ],
            "output0": list(struct.unpack("<3f", answer.raw_output_contents[0])),
            "output1": list(struct.unpack("<1f", answer.raw_output_contents[1])),
        }

    with grpc.insecure_channel(management_addr) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        out["list_before"] = json.loads(stub.ListModels(management_pb2.ListModelsRequest()).msg)
        params = {"url": mar, "initial_workers": 1, "synchronous": True, "model_name": "digits"}
        out["register"] = json.loads(stub.RegisterModel(management_pb2.RegisterModelRequest(**params)).msg)
        out["list_after"] = json.loads(stub.ListModels(management_pb2.ListModelsRequest()).msg)
        out["unregister"] = json.loads(stub.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="digits")).msg)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
